"""Synthetic benchmark data: ``benchmarks/bench.yaml``'s 30 columns in Parquet files."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

C0 = ["a", "b", "c", "d"]
C1 = ["red", "green", "blue", "yellow", "black", "white"]
C2 = [f"g{i:02d}" for i in range(40)]


def make_frame(rows: int, *, seed: int, offset: int) -> pd.DataFrame:
    """``rows`` rows whose label depends on a dozen features, two categoricals and noise."""
    rng = np.random.default_rng(seed)
    floats = rng.normal(0.0, 1.0, (rows, 20)).astype("float64")
    floats[:, 10:][rng.random((rows, 10)) < 0.02] = np.nan
    ints = rng.integers(0, 1000, (rows, 5))
    c0 = rng.integers(0, len(C0), rows)
    c1 = rng.integers(0, len(C1), rows)
    c2 = rng.integers(0, len(C2), rows)
    logit = (
        floats[:, 0]
        - 0.8 * floats[:, 1]
        + 0.5 * floats[:, 2] * floats[:, 3]
        + 0.3 * np.sin(3 * floats[:, 4])
        + 0.002 * (ints[:, 0] - 500)
        + np.array([0.0, 0.5, -0.5, 1.0])[c0]
        + 0.3 * (c1 == 2)
        + np.nan_to_num(0.4 * floats[:, 10])
        + rng.normal(0.0, 1.0, rows)
    )
    frame = pd.DataFrame(floats, columns=[f"f{i:02d}" for i in range(20)])
    for i in range(5):
        frame[f"n{i}"] = ints[:, i]
    frame.insert(0, "row_id", [f"r{offset + i:010d}" for i in range(rows)])
    frame["c0"] = np.array(C0, dtype=object)[c0]
    frame["c1"] = np.array(C1, dtype=object)[c1]
    frame["c2"] = np.array(C2, dtype=object)[c2]
    frame["label"] = logit > 0.3
    return frame


def write_files(folder: str, *, rows: int, files: int, seed: int, first: int = 0) -> list[str]:
    """``files`` Parquet files of ``rows`` rows in total under ``folder``; their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    per_file = rows // files
    for i in range(files):
        index = first + i
        frame = make_frame(per_file, seed=seed * 1000 + index, offset=index * per_file)
        path = os.path.join(folder, f"part-{index:04d}.parquet")
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        paths.append(path)
    return paths
