"""A model's predictions of its test rows, kept beside it by partition, for later trainings.

Which rows of a partition are test rows, and how a model sees them, is fixed by the
partition's content (its id), the rows of rejected files it skips, the model's layout
(features, categories, classes, split) and how rows are prepared. A later training draws
the champion beside its candidate only when both encode rows the same way, and a warm start
continues the champion on the same layout: for every partition the champion was trained on
with the same rows skipped, its predictions are the ones it made then, as long as they were
kept by this way of preparing rows and this XGBoost, and their labels are the labels of the
rows gathered now. Only the other partitions' test rows are predicted again.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.lake import partition_of
from tasks.records import ModelMetadata

# Bumped whenever the rows a partition prepares into (``features.prepare_frame``: the
# split, the rows dropped, their order) change: kept predictions of another format are not
# used.
ROWS_FORMAT = "1"
_FORMAT_KEY = b"mlops.rows_format"
_XGBOOST_KEY = b"mlops.xgboost"


class Kept(NamedTuple):
    """One partition's test rows as a model saw them: their labels and its predictions."""

    labels: np.ndarray
    predictions: np.ndarray


def _xgboost_version() -> str:
    # The installed version, without importing XGBoost.
    return importlib_metadata.version("xgboost")


def encode_predictions(by_uri: Mapping[str, Kept]) -> bytes:
    """Parquet of each partition's test rows (``label``, and a ``prediction`` column, or one
    per class, ``prediction_0``, ...), by partition id, partition after partition."""
    kept = list(by_uri.values())
    first = np.asarray(kept[0].predictions) if kept else np.zeros(0)
    width = int(first.shape[-1]) if first.ndim == 2 else 1
    rows = [len(k.labels) for k in kept]
    values = np.concatenate(
        [np.asarray(k.predictions, "float32").reshape(-1, width) for k in kept]
        or [np.zeros((0, width), "float32")]
    )
    labels = np.concatenate([np.asarray(k.labels, "float64") for k in kept] or [np.zeros(0)])
    names = ["prediction"] if width == 1 else [f"prediction_{k}" for k in range(width)]
    table = pa.table(
        {
            "partition": pa.DictionaryArray.from_arrays(
                pa.array(np.repeat(np.arange(len(kept), dtype="int32"), rows), pa.int32()),
                pa.array([partition_of(u) for u in by_uri], pa.string()),
            ),
            "label": pa.array(labels, pa.float64()),
            **{name: pa.array(values[:, k], pa.float32()) for k, name in enumerate(names)},
        }
    ).replace_schema_metadata(
        {_FORMAT_KEY: ROWS_FORMAT.encode(), _XGBOOST_KEY: _xgboost_version().encode()}
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def decode_predictions(data: bytes) -> dict[str, Kept]:
    """Each partition id's kept test rows, as :func:`encode_predictions` wrote them; none
    when they were kept with another way of preparing rows or another XGBoost (a partition
    without test rows has none either)."""
    # ParquetFile, not read_table: pyarrow 26 aborts at exit after read_table read a file
    # without rows.
    table = pq.ParquetFile(io.BytesIO(data)).read()
    written = table.schema.metadata or {}
    current = {_FORMAT_KEY: ROWS_FORMAT.encode(), _XGBOOST_KEY: _xgboost_version().encode()}
    if table.num_rows == 0 or any(written.get(k) != v for k, v in current.items()):
        return {}
    names = [n for n in table.column_names if n.startswith("prediction")]
    partitions = table.column("partition").combine_chunks()
    ids = partitions.dictionary.to_pylist()
    codes = partitions.indices.to_numpy(zero_copy_only=False)
    labels = table.column("label").to_numpy()
    values = np.column_stack([table.column(n).to_numpy() for n in names]).astype("float32")
    # Rows were written partition after partition: each partition's are one run of rows.
    starts = [0, *(np.flatnonzero(np.diff(codes)) + 1).tolist()]
    stops = [*starts[1:], len(codes)]
    return {
        ids[codes[start]]: Kept(
            labels[start:stop], values[start:stop] if len(names) > 1 else values[start:stop, 0]
        )
        for start, stop in zip(starts, stops, strict=True)
    }


def reusable_predictions(
    stored: Mapping[str, Kept],
    *,
    model: ModelMetadata,
    uris: list[str],
    excluded: Mapping[str, list[tuple[int, int]]],
) -> dict[str, Kept]:
    """The stored test rows of ``model`` (by partition id) that hold for ``uris`` skipping
    ``excluded``, by URI: partitions it was trained on that skip the same rows now. The
    caller checks that the model encodes rows as the training does, and that the labels are
    those of the rows it gathers."""
    trained = {partition_of(u): _ranges(model.excluded_rows.get(u, [])) for u in model.partitions}
    return {
        uri: stored[pid]
        for uri in uris
        if (pid := partition_of(uri)) in stored
        and trained.get(pid) == _ranges(excluded.get(uri, []))
    }


def _ranges(ranges: list[tuple[int, int]]) -> list[list[int]]:
    return [[int(a), int(b)] for a, b in ranges]
