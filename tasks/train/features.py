"""How rows become a model's inputs: features, categories, classes and the split (pure).

Rows are assigned to train/validation/test by a hash of the key column (or of the whole row
when there is no key), so the split never depends on file order, partitioning or the
cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Any

import numpy as np
import pandas as pd

from tasks.errors import TrainingError
from tasks.records import DatasetVersion, FeatureLayout
from tasks.spec import DatasetSpec

SPLIT_COLUMN = "__split__"

LABEL_COLUMN = "__label__"

SPLITS = {"train": 0, "validation": 1, "test": 2}


def _natural_order(values: set[str]) -> list[str]:
    """Sort class labels numerically when they are numbers, else as text."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def accepted_distinct(
    version: DatasetVersion, accepted: list[str], rejected_files: Collection[str] = ()
) -> dict[str, set[str]]:
    """Distinct values per column in the accepted rows: those of the accepted partitions,
    less the rows of rejected files."""
    wanted = set(accepted)
    seen: dict[str, set[str]] = {}
    for partition in version.partitions:
        if partition.partition_id not in wanted:
            continue
        kept = [s for s in partition.segments if s.source_uri not in rejected_files]
        if len(kept) == len(partition.segments):
            sources = [partition.distinct]
        else:
            # A segment keeps a column's values only where it has fewer than the partition.
            sources = [{**partition.distinct, **s.distinct} for s in kept]
        for distinct in sources:
            for column, values in distinct.items():
                seen.setdefault(column, set()).update(values)
    return seen


def feature_layout(
    spec: DatasetSpec,
    version: DatasetVersion,
    accepted: list[str],
    rejected_files: Collection[str] = (),
) -> FeatureLayout:
    """Features, categories and classes for training on the accepted rows of ``version``:
    the ``accepted`` partitions without the rows of ``rejected_files``."""
    distinct = accepted_distinct(version, accepted, rejected_files)
    categories: dict[str, list[str]] = {}
    for name in spec.feature_columns:
        column = spec.columns[name]
        if column.type != "category":
            continue
        seen = distinct.get(name, set())
        categories[name] = list(column.categories) if column.categories else sorted(seen)
    classes: list[str] | None = None
    if spec.task != "regression":
        classes = _natural_order(distinct.get(spec.target, set()))
        if len(classes) < 2:
            raise TrainingError(
                f"target '{spec.target}' has {len(classes)} class(es) "
                f"({', '.join(classes) or 'none'}) in the accepted partitions of dataset "
                f"'{spec.name}' version {version.version}; a {spec.task} task needs at least two"
            )
        if spec.task == "binary" and len(classes) > 2:
            raise TrainingError(
                f"target '{spec.target}' has {len(classes)} classes ({', '.join(classes[:10])}) "
                f"but the spec's task is binary; use task: multiclass"
            )
    return FeatureLayout(
        task=spec.task,
        target=spec.target,
        key=spec.key,
        features=spec.feature_columns,
        feature_types={f: spec.columns[f].type for f in spec.feature_columns},
        categories=categories,
        classes=classes,
        # The columns the split hashes are part of the model's record: a champion can only
        # be compared on a candidate's test rows when both drew them the same way.
        split={
            **spec.split.model_dump(mode="json"),
            "columns": [spec.key] if spec.key else sorted(spec.columns),
        },
    )


def _canonical(series: pd.Series) -> pd.Series:
    """One representation per value, whatever dtype the column was read back with.

    A key column read as int64 from one file and float64 from another (because it held
    nulls) must hash the same, or a row could land in train from one file and test from
    another.
    """
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype("float64")
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return pd.to_datetime(series).astype("datetime64[us]").astype("int64").astype("float64")
    values = series.astype("object").where(series.notna(), None)
    is_text = isinstance(series.dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(
        series.dtype.categories.dtype
    )
    if is_text or pd.api.types.is_string_dtype(series.dtype):
        return values
    # Mixed objects (e.g. nullable booleans): spell each value the way class labels are.
    return values.map(lambda v: None if v is None else class_name(v))


def split_codes(frame: pd.DataFrame, *, key: str | None, split: dict[str, Any]) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test for each row, from a stable hash."""
    # Without a key, a row is identified by all its columns (in name order, so reading
    # columns in another order cannot move a row to another split).
    columns = split.get("columns") or (
        [key] if key else sorted(c for c in frame.columns if not c.startswith("__"))
    )
    canonical = pd.DataFrame({c: _canonical(frame[c]) for c in columns}, index=frame.index)
    hashed = pd.util.hash_pandas_object(canonical, index=False).to_numpy()
    salt = str(split.get("salt", ""))
    if salt:
        # Mix the salt into every hash (pandas only salts text values).
        seed = np.uint64(int(hashlib.sha256(salt.encode()).hexdigest()[:16], 16))
        hashed = pd.util.hash_array(hashed ^ seed)
    u = (hashed % np.uint64(10_000)).astype("float64") / 10_000.0
    test, validation = float(split["test"]), float(split["validation"])
    return np.where(u < test, 2, np.where(u < test + validation, 1, 0)).astype("int8")


def class_name(value: object) -> str:
    """A class label as text, the way ingestion records it (an int column read back as
    floats because it held nulls still names its classes ``1``, not ``1.0``)."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def _as_float(series: pd.Series, kind: str) -> pd.Series:
    """A feature as float32: what XGBoost stores features as anyway, so nothing it sees
    changes, while the prepared partitions held in worker memory take half the space."""
    if kind == "bool":
        values = series.map({True: 1.0, False: 0.0})
    elif kind == "datetime":
        # XGBoost has no time type: seconds since the epoch keep order and spacing.
        values = (pd.to_datetime(series) - pd.Timestamp(0)).dt.total_seconds()
    else:
        values = pd.to_numeric(series, errors="coerce")
    return values.astype("float32")


def model_inputs(frame: pd.DataFrame, layout: FeatureLayout) -> pd.DataFrame:
    """The model's features of ``frame``'s rows, encoded exactly as at training: numbers as
    float32, categories with the model's categories (one it never saw becomes missing, which
    XGBoost scores down its default branch)."""
    out = pd.DataFrame(index=frame.index)
    for name in layout.features:
        kind = layout.feature_types[name]
        if kind == "category":
            values = frame[name].astype("object").where(frame[name].notna(), None)
            out[name] = pd.Categorical(values, categories=layout.categories[name])
        else:
            out[name] = _as_float(frame[name], kind)
    return out


def prepare_frame(
    frame: pd.DataFrame, layout: FeatureLayout, keep: tuple[int, ...] | None = None
) -> pd.DataFrame:
    """Model inputs, label and split code for one partition (rows without a target dropped;
    with ``keep``, only the rows of those split codes)."""
    frame = frame[frame[layout.target].notna()]
    split = split_codes(frame, key=layout.key, split=layout.split)
    if keep is not None:
        # Drop what will not be used before the work of encoding it.
        wanted = np.isin(split, keep)
        frame, split = frame[wanted], split[wanted]
    out = model_inputs(frame, layout)
    target = frame[layout.target]
    if layout.classes is not None:
        index = {c: i for i, c in enumerate(layout.classes)}
        # Name each distinct value once, not each row (a per-row lambda was half the cost
        # of preparing a partition).
        codes, uniques = pd.factorize(target)
        lookup = np.array([index.get(class_name(v), -1) for v in uniques], dtype="int32")
        out[LABEL_COLUMN] = lookup[codes] if len(lookup) else np.full(len(codes), -1, "int32")
        out[SPLIT_COLUMN] = split
        return out[out[LABEL_COLUMN] >= 0]  # a class unknown to this model cannot be scored
    out[LABEL_COLUMN] = pd.to_numeric(target).astype("float64")
    out[SPLIT_COLUMN] = split
    return out
