"""A model's predictions of its test rows, kept beside it by partition, for later trainings.

Which rows of a partition are test rows, and how a model sees them, is fixed by the
partition's content (its id), the rows of rejected files it skips, and the model's layout
(features, categories, classes, split). A later training draws the champion beside its
candidate only when both encode rows the same way, and a warm start continues the champion
on the same layout: for every partition the champion was trained on with the same rows
skipped, its predictions are the ones it made then. Only the other partitions' test rows
are predicted again.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.lake import partition_of
from tasks.records import ModelMetadata


def encode_predictions(by_uri: Mapping[str, np.ndarray]) -> bytes:
    """Parquet of each partition's test-row predictions, by partition id, in the order of
    the partitions and of their rows: a ``prediction`` column, or one per class
    (``prediction_0``, ...) for classes."""
    arrays = [np.asarray(p, dtype="float32") for p in by_uri.values()]
    width = arrays[0].shape[1] if arrays and arrays[0].ndim == 2 else 1
    rows = [len(a) for a in arrays]
    values = np.concatenate([a.reshape(-1, width) for a in arrays] or [np.zeros((0, width))])
    names = ["prediction"] if width == 1 else [f"prediction_{k}" for k in range(width)]
    table = pa.table(
        {
            "partition": pa.DictionaryArray.from_arrays(
                pa.array(np.repeat(np.arange(len(arrays), dtype="int32"), rows), pa.int32()),
                pa.array([partition_of(u) for u in by_uri], pa.string()),
            ),
            **{name: pa.array(values[:, k], pa.float32()) for k, name in enumerate(names)},
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def decode_predictions(data: bytes) -> dict[str, np.ndarray]:
    """Each partition id's predictions, as :func:`encode_predictions` wrote them (a
    partition without test rows has none)."""
    # ParquetFile, not read_table: pyarrow 26 aborts at exit after read_table read a file
    # without rows.
    table = pq.ParquetFile(io.BytesIO(data)).read()
    names = [n for n in table.column_names if n != "partition"]
    if table.num_rows == 0:
        return {}
    partitions = table.column("partition").combine_chunks()
    ids = partitions.dictionary.to_pylist()
    codes = partitions.indices.to_numpy(zero_copy_only=False)
    values = np.column_stack([table.column(n).to_numpy() for n in names]).astype("float32")
    # Rows were written partition after partition: each partition's are one run of rows.
    starts = [0, *(np.flatnonzero(np.diff(codes)) + 1).tolist()]
    stops = [*starts[1:], len(codes)]
    return {
        ids[codes[start]]: values[start:stop] if len(names) > 1 else values[start:stop, 0]
        for start, stop in zip(starts, stops, strict=True)
    }


def reusable_predictions(
    stored: Mapping[str, np.ndarray],
    *,
    model: ModelMetadata,
    uris: list[str],
    excluded: Mapping[str, list[tuple[int, int]]],
) -> dict[str, np.ndarray]:
    """The stored predictions of ``model`` (by partition id) that hold for the test rows of
    ``uris`` skipping ``excluded``, by URI: partitions it was trained on that skip the same
    rows now. The caller checks that the model encodes rows as the training does."""
    trained = {
        partition_of(u): list(map(list, model.excluded_rows.get(u, []))) for u in model.partitions
    }
    out = {}
    for uri in uris:
        pid = partition_of(uri)
        if pid in stored and trained.get(pid) == list(map(list, excluded.get(uri, []))):
            out[uri] = stored[pid]
    return out
