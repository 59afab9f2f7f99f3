"""Synthetic benchmark data: ``benchmarks/bench.yaml``'s 30 columns in Parquet files, the
same rows in any number of files."""

from __future__ import annotations

import os
from collections.abc import Iterable

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


# Rows are generated in chunks of rows // CHUNKS, each from its own seed, so that every
# layout of the same rows (16 files, 2,000 files, one file) holds exactly the same rows.
CHUNKS = 2000
# Rows per row group of a file written as one (what Spark and pyarrow write by default).
ROW_GROUP_ROWS = 1_000_000


def chunk(rows: int, index: int, *, seed: int) -> pd.DataFrame:
    """The ``index``-th chunk of ``rows`` rows (the same whatever file it lands in)."""
    return make_frame(rows, seed=seed * 1_000_003 + index, offset=index * rows)


def write_files(folder: str, *, rows: int, files: int, seed: int, first: int = 0) -> list[str]:
    """``rows`` rows in ``files`` Parquet files under ``folder`` (the files' chunks start at
    chunk ``first * chunks-per-file``); their paths. ``rows`` must split into ``CHUNKS``
    chunks, each file a whole number of them."""
    size = max(1, rows // CHUNKS)
    count = rows // size
    if count % files:
        raise ValueError(f"{rows} rows do not split into {files} files of whole chunks")
    per_file = count // files
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(files):
        index = first + i
        path = os.path.join(folder, f"part-{index:04d}.parquet")
        chunks = range(index * per_file, (index + 1) * per_file)
        write_parquet(path, (chunk(size, c, seed=seed) for c in chunks))
        paths.append(path)
    return paths


def write_parquet(path: str, frames: Iterable[pd.DataFrame]) -> None:
    """The frames as one Parquet file, in row groups of up to ``ROW_GROUP_ROWS`` rows."""
    writer: pq.ParquetWriter | None = None
    pending: list[pa.Table] = []
    pending_rows = 0
    try:
        for frame in frames:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            pending.append(table)
            pending_rows += table.num_rows
            if pending_rows >= ROW_GROUP_ROWS:
                writer = writer or pq.ParquetWriter(path, table.schema)
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                pending, pending_rows = [], 0
        if pending:
            writer = writer or pq.ParquetWriter(path, pending[0].schema)
            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
    finally:
        if writer is not None:
            writer.close()
