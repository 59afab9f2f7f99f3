"""Synthetic customer-churn landing data with a learnable signal (see ``datasets/demo.yaml``).

Deterministic per seed: the same arguments always write byte-identical files, so a second
``make run`` finds nothing new to ingest.
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("csv", "csv.gz", "parquet")
CONTRACTS = ["month-to-month", "one-year", "two-year"]
PAYMENTS = ["card", "bank-transfer", "check", "wallet"]
REGIONS = ["north", "south", "east", "west", "central"]
DEFECTS = ("wrong-types", "out-of-range", "missing-column", "truncated")


@dataclass(frozen=True)
class DemoFile:
    path: str
    rows: int
    defect: str | None


def make_frame(rows: int, *, seed: int, offset: int = 0) -> pd.DataFrame:
    """``rows`` customers; the churn probability depends on contract, tenure, charges, calls."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(3, size=rows, p=[0.55, 0.25, 0.20])
    tenure = np.where(contract == 0, rng.integers(0, 36, rows), rng.integers(6, 120, rows))
    monthly = np.round(rng.gamma(4.0, 18.0, rows) + 10.0, 2)
    total = np.round(monthly * np.maximum(tenure, 1) * rng.uniform(0.9, 1.1, rows), 2)
    calls = rng.poisson(1.5 + 1.5 * (contract == 0), rows)
    region = rng.integers(0, len(REGIONS), rows)
    payment = rng.choice(len(PAYMENTS), size=rows, p=[0.4, 0.3, 0.1, 0.2])
    age = rng.integers(18, 91, rows)
    satisfaction = np.round(np.clip(rng.normal(3.5 - 0.25 * calls / 2, 0.9, rows), 1, 5), 1)
    logit = (
        -1.2
        + 1.6 * (contract == 0)
        - 0.8 * (contract == 2)
        - 0.035 * tenure
        + 0.012 * (monthly - 80)
        + 0.35 * calls
        - 0.6 * (satisfaction - 3.5)
        + 0.4 * (payment == 2)
        + np.array([0.0, 0.3, -0.2, 0.1, -0.3])[region]
        + 0.2 * (age >= 65)
    )
    churned = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    signup = pd.Timestamp("2026-01-01") - pd.to_timedelta(
        tenure * 30 + rng.integers(0, 30, rows), "D"
    )

    frame = pd.DataFrame(
        {
            "customer_id": [f"C{offset + i:09d}" for i in range(rows)],
            "signup_date": signup,
            "age": age,
            "is_senior": age >= 65,
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": calls,
            "satisfaction": satisfaction,
            "contract": pd.Categorical.from_codes(contract, CONTRACTS),
            "payment_method": pd.Categorical.from_codes(payment, PAYMENTS),
            "region": pd.Categorical.from_codes(region, REGIONS),
            "churned": churned,
        }
    )
    # Real exports have holes: some totals are not computed yet, some surveys unanswered.
    frame.loc[rng.random(rows) < 0.03, "total_charges"] = np.nan
    frame.loc[rng.random(rows) < 0.10, "satisfaction"] = np.nan
    return frame


def encode(frame: pd.DataFrame, fmt: str) -> bytes:
    """Serialize deterministically (gzip without a timestamp, Parquet without varying metadata)."""
    if fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
        return buf.getvalue()
    text = frame.to_csv(index=False, date_format="%Y-%m-%d").encode()
    return gzip.compress(text, mtime=0) if fmt == "csv.gz" else text


def damage(frame: pd.DataFrame, defect: str, *, seed: int) -> pd.DataFrame:
    """Apply one realistic defect that ingestion or validation must catch."""
    rng = np.random.default_rng(seed)
    bad = frame.copy()
    if defect == "wrong-types":
        # An upstream export wrote text into a numeric column.
        ages = bad["age"].astype(object)
        ages[rng.random(len(bad)) < 0.05] = "unknown"
        bad["age"] = ages
    elif defect == "out-of-range":
        rows = rng.random(len(bad)) < 0.02
        bad.loc[rows, "age"] = 150
        bad.loc[rng.random(len(bad)) < 0.01, "monthly_charges"] = -20.0
    elif defect == "missing-column":
        bad = bad.drop(columns=["monthly_charges"])
    return bad


def shift(frame: pd.DataFrame, column: str, *, seed: int, scale: float = 1.5) -> pd.DataFrame:
    """The world moved: a numeric column's values ``scale`` times what they were, or a fifth
    of a category column's values a category never seen before (``<column>-new``)."""
    if column not in frame.columns:
        raise ValueError(f"--drift: '{column}' is not a column of the demo data")
    moved = frame.copy()
    values = moved[column]
    if isinstance(values.dtype, pd.CategoricalDtype):
        rng = np.random.default_rng(seed)
        text = values.astype(str).to_numpy(dtype=object)
        text[rng.random(len(text)) < 0.2] = f"{column}-new"
        moved[column] = pd.Categorical(text)
    elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values):
        scaled = values * scale
        moved[column] = scaled.round(2) if values.dtype.kind == "f" else scaled.round().astype(int)
    else:
        raise ValueError(f"--drift: '{column}' is neither numeric nor a category")
    return moved


def write_demo_data(
    out: str,
    *,
    rows: int,
    files: int,
    seed: int,
    defects: bool = False,
    drift: list[str] | None = None,
    drift_scale: float = 1.5,
    unlabeled: bool = False,
) -> list[DemoFile]:
    """Write ``files`` landing files with ``rows`` rows in all under ``out``; list them.

    For a scoring batch: ``drift`` shifts those columns (see ``shift``) and ``unlabeled``
    leaves the target out, as data to be scored arrives.
    """
    if rows < files:
        raise ValueError(f"--rows ({rows}) must be at least --files ({files})")
    if files < 1:
        raise ValueError("--files must be at least 1")
    os.makedirs(out, exist_ok=True)
    sizes = [rows // files + (1 if i < rows % files else 0) for i in range(files)]
    # Spread defects over the files after the first, so some good data always lands.
    defect_for = {1 + i: d for i, d in enumerate(DEFECTS) if defects and 1 + i < files}
    written: list[DemoFile] = []
    offset = 0
    for i, size in enumerate(sizes):
        fmt = FORMATS[i % len(FORMATS)]
        frame = make_frame(size, seed=seed * 100_003 + i, offset=offset)
        offset += size
        defect = defect_for.get(i)
        if defect is not None and defect != "truncated":
            frame = damage(frame, defect, seed=seed + i)
        for column in drift or []:
            frame = shift(frame, column, seed=seed + i, scale=drift_scale)
        if unlabeled:
            frame = frame.drop(columns=["churned"])
        data = encode(frame, fmt)
        if defect == "truncated":
            # A transfer that died half way: cut mid-record (and mid-stream when compressed).
            data = data[: len(data) // 2 + 7]
        path = os.path.join(out, f"customers-{i:04d}.{fmt}")
        with open(path, "wb") as fh:
            fh.write(data)
        written.append(DemoFile(path=path, rows=size, defect=defect))
    return written
