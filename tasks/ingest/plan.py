"""Which landing files an ingest run reads, and how they are grouped into splits (pure).

A split is the files one ingest task reads, in order, into partitions of bounded size.
Splits are sticky: a split whose files are all still listed with the same content tag is
kept as the last run left it, partitions and all, and its files are not read again. Only
the other files (new, changed, or sharing a split with a changed or removed file) form new
splits: files packed in landing order until their estimated decoded size reaches the
partition size, a file estimated larger than that alone in a split of its own (it is cut
into pieces as it is read). So a new file never rewrites partitions of old files, and the
number of splits, tasks and workers follows the bytes, not the number of files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from tasks.ingest.landing import source_format
from tasks.records import IngestPlan, LandingFile, LandingIndex, Split, SplitOutcome
from tasks.spec import DatasetSpec, stable_hash

# Bumped when the way a split is read into partitions changes meaning.
SPLIT_FORMAT = 1
# Decoded (in-memory Arrow) bytes per byte on disk, by format: a planning estimate only,
# the writer bounds what it actually holds. CSV text is about as large as its values;
# gzip compresses CSV about 4x; Parquet is compressed and encoded, about 3x.
DECODED_PER_BYTE = {"csv": 1.0, "csv.gz": 4.0, "parquet": 3.0}


def estimated_bytes(file: LandingFile, decoded: Mapping[str, int] | None = None) -> int:
    """About how large ``file``'s rows are once decoded: as measured (``decoded``, e.g. from
    a Parquet footer), else from its size on disk and format."""
    if decoded and file.uri in decoded:
        return decoded[file.uri]
    return math.ceil(file.bytes * DECODED_PER_BYTE.get(source_format(file.uri) or "", 1.0))


def split_id(files: list[LandingFile], spec: DatasetSpec) -> str:
    """A split's identity: its files (URI and content tag) and how they are cut."""
    return stable_hash(
        {
            "format": SPLIT_FORMAT,
            "files": [[f.uri, f.tag] for f in files],
            "schema": spec.schema_hash(),
            "partition": [spec.ingest.partition_bytes, spec.ingest.partition_rows],
        }
    )


def pack(
    files: list[LandingFile], spec: DatasetSpec, decoded: Mapping[str, int] | None = None
) -> list[Split]:
    """``files`` in landing order, grouped into splits of about one partition each."""
    target = spec.ingest.partition_bytes
    splits: list[Split] = []
    group: list[LandingFile] = []
    size = 0

    def close() -> None:
        nonlocal group, size
        if group:
            splits.append(Split(split_id=split_id(group, spec), files=group, estimated_bytes=size))
        group, size = [], 0

    for file in sorted(files, key=lambda f: f.uri):
        estimate = estimated_bytes(file, decoded)
        if estimate >= target:
            # Cut into pieces as it is read, in a split of its own (one task per large file).
            close()
            group, size = [file], estimate
            close()
            continue
        if group and size + estimate > target:
            close()
        group.append(file)
        size += estimate
    close()
    return splits


def index_applies(index: LandingIndex | None, spec: DatasetSpec) -> bool:
    """Whether an index was written under the spec's schema and partition settings."""
    return (
        index is not None
        and index.schema_hash == spec.schema_hash()
        and index.partition_bytes == spec.ingest.partition_bytes
        and index.partition_rows == spec.ingest.partition_rows
    )


def plan_ingest(
    files: list[LandingFile],
    spec: DatasetSpec,
    *,
    index: LandingIndex | None,
    adopted: list[SplitOutcome] | None = None,
    now: datetime | None = None,
    decoded: Mapping[str, int] | None = None,
) -> IngestPlan:
    """Keep the splits of ``index`` whose files are unchanged (and that have not expired
    by ``now``); pack every other file.

    ``adopted``: one-file splits made from a 0.1 lake's partitions whose file was re-hashed
    and found unchanged (``index.py``); ``decoded``: measured decoded sizes by URI.
    """
    listed = {f.uri: f for f in files}
    moment = now or datetime.now(UTC)
    kept: list[SplitOutcome] = []
    if index_applies(index, spec):
        assert index is not None
        for outcome in index.splits:
            fresh = outcome.expires_at is None or outcome.expires_at > moment
            if fresh and all(listed.get(f.uri) == f for f in outcome.files):
                kept.append(outcome)
    kept += adopted or []
    taken = {f.uri for outcome in kept for f in outcome.files}
    free = [f for f in files if f.uri not in taken]
    return IngestPlan(kept=kept, todo=pack(free, spec, decoded), adopted=len(adopted or []))


def run_outcomes(
    plan: IngestPlan,
    results: list[SplitOutcome],
    from_cache: list[bool],
    *,
    expiration: timedelta | None,
    now: datetime | None = None,
) -> tuple[list[SplitOutcome], int]:
    """Every split of the run (kept ones first) and how many landing files it read.

    A split found in the cache wrote nothing in this run; one ingested now under a cache
    expiry is kept by the landing index until then.
    """
    moment = now or datetime.now(UTC)
    expires = moment + expiration if expiration is not None else None
    ingested = [
        outcome.model_copy(update={"written": []})
        if hit
        else outcome.model_copy(update={"expires_at": expires})
        for outcome, hit in zip(results, from_cache, strict=True)
    ]
    read = sum(len(s.files) for s, hit in zip(plan.todo, from_cache, strict=True) if not hit)
    return [*plan.kept, *ingested], read
