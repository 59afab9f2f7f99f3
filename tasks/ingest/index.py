"""The landing index: the splits the last ingestion of a landing folder made, so the next
one keeps them (``plan.py``). One per dataset and landing folder, under
``<lake>/datasets/<name>/landing/``, replaced after each version manifest is written.

Losing it loses nothing but time: every file then counts as new, and splits packed the same
way as before find their results in the cache. A lake written by 0.1 has no index: its
one-file partitions are adopted once, after re-hashing each landing file they name.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from tasks.errors import LakeError
from tasks.ingest.landing import source_format
from tasks.ingest.plan import plan_ingest, split_id
from tasks.ingest.versions import load_version
from tasks.lake import Lake
from tasks.records import IngestPlan, LandingFile, LandingIndex, SplitOutcome
from tasks.spec import DatasetSpec
from tasks.storage import file_sha256, open_file

logger = logging.getLogger(__name__)
# Files hashed (adopting a 0.1 lake) or footers read at once: I/O-bound.
HASH_THREADS = 16


def index_path(lake: Lake, dataset: str, source: str) -> str:
    name = hashlib.sha256(source.rstrip("/").encode()).hexdigest()[:16]
    return lake.dataset(dataset, "landing", f"{name}.json")


def read_index(lake: Lake, spec: DatasetSpec, source: str) -> LandingIndex | None:
    """The index of ``source``, or None when there is none (or it cannot be read)."""
    path = index_path(lake, spec.name, source)
    if not lake.exists(path):
        return None
    try:
        index = LandingIndex.model_validate(lake.read_json(path))
    except (ValueError, ValidationError) as err:
        logger.warning("Landing index %s cannot be read; every file counts as new: %s", path, err)
        return None
    # Kept splits wrote nothing in the run that keeps them.
    splits = [s.model_copy(update={"written": []}) for s in index.splits]
    return index.model_copy(update={"splits": splits})


def write_index(
    lake: Lake, spec: DatasetSpec, source: str, splits: list[SplitOutcome]
) -> LandingIndex:
    index = LandingIndex(
        source_uri=source,
        schema_hash=spec.schema_hash(),
        partition_bytes=spec.ingest.partition_bytes,
        partition_rows=spec.ingest.partition_rows,
        splits=splits,
    )
    lake.write_json(index_path(lake, spec.name, source), index)
    return index


def adopt_release_0_1(
    lake: Lake, spec: DatasetSpec, files: list[LandingFile]
) -> list[SplitOutcome]:
    """The latest version's one-file partitions written by 0.1 whose landing file is listed
    with the same bytes, each as a split of its own (its file is hashed, not parsed)."""
    try:
        latest = load_version(lake, spec.name, schema_hash=spec.schema_hash())
    except LakeError:
        return []
    legacy = {
        p.segments[0].source_uri: p
        for p in latest.partitions
        if len(p.segments) == 1 and p.segments[0].tag is None
    }
    candidates = [f for f in files if f.uri in legacy]
    if not candidates:
        return []
    with ThreadPoolExecutor(max_workers=min(HASH_THREADS, len(candidates))) as pool:
        hashes = list(pool.map(lambda f: file_sha256(f.uri), candidates))
    adopted = []
    for file, sha in zip(candidates, hashes, strict=True):
        ref = legacy[file.uri]
        if ref.segments[0].sha256 != sha:
            continue  # changed since: ingested again
        sid = split_id([file], spec)
        segment = ref.segments[0].model_copy(update={"tag": file.tag})
        partition = ref.model_copy(update={"segments": [segment], "split_id": sid})
        adopted.append(SplitOutcome(split_id=sid, files=[file], partitions=[partition]))
    return adopted


def plan_ingestion(
    lake: Lake, spec: DatasetSpec, source: str, files: list[LandingFile], *, refresh: bool = False
) -> IngestPlan:
    """The run's plan from what the lake remembers of ``source`` (see ``plan.py``);
    ``refresh`` forgets it: every file is read again."""
    index = None if refresh else read_index(lake, spec, source)
    adopted = adopt_release_0_1(lake, spec, files) if index is None and not refresh else []
    plan = plan_ingest(files, spec, index=index, adopted=adopted)
    # The files to read, packed by what their Parquet footers say they decode to.
    decoded = parquet_sizes([f for s in plan.todo for f in s.files])
    return plan_ingest(files, spec, index=index, adopted=adopted, decoded=decoded)


def parquet_sizes(files: list[LandingFile]) -> dict[str, int]:
    """Each Parquet file's uncompressed size, from its footer (one small read per file): a
    better estimate than its size on disk. A footer that cannot be read is left to the
    estimate (ingesting the file will say what is wrong with it)."""
    parquet = [f for f in files if source_format(f.uri) == "parquet"]
    if not parquet:
        return {}

    def size(file: LandingFile) -> int | None:
        try:
            with open_file(file.uri, "rb") as fh:
                meta = pq.read_metadata(fh)
        except (OSError, ValueError, pa.ArrowException):
            return None
        return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))

    with ThreadPoolExecutor(max_workers=min(HASH_THREADS, len(parquet))) as pool:
        sizes = list(pool.map(size, parquet))
    return {f.uri: s for f, s in zip(parquet, sizes, strict=True) if s is not None}
