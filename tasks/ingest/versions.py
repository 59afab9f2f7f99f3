"""Dataset version manifests: the partitions of one ingestion, content-addressed."""

from __future__ import annotations

from collections.abc import Iterable

from tasks.errors import LakeError
from tasks.lake import Lake
from tasks.records import DatasetVersion, IngestResult, PartitionRef, SplitOutcome
from tasks.spec import DatasetSpec, stable_hash


def write_version(
    *,
    spec: DatasetSpec,
    lake: Lake,
    source: str,
    outcomes: Iterable[SplitOutcome],
    files_read: int = 0,
) -> IngestResult:
    """Write the dataset version manifest (content-addressed, so re-runs reuse it)."""
    outcomes = list(outcomes)
    partitions = sorted(
        (p for o in outcomes for p in o.partitions),
        key=lambda p: (p.sources[0] if p.sources else "", p.segments[0].file_start),
    )
    quarantined = sorted((q for o in outcomes for q in o.quarantined), key=lambda q: q.source_uri)
    # The same rows (a file alone in two splits, say) are one partition, listed once.
    unique = in_lake(lake, spec.name, list({p.partition_id: p for p in partitions}.values()))
    version_id = stable_hash(
        {
            "schema": spec.schema_hash(),
            "partitions": sorted(p.partition_id for p in unique),
            "quarantined": sorted(q.record_id for q in quarantined),
        }
    )
    path = lake.version(spec.name, version_id)
    if lake.exists(path):
        # Same content as a version written before; report the files under today's names.
        version = DatasetVersion.model_validate(lake.read_json(path)).model_copy(
            update={"source_uri": source, "partitions": unique, "quarantined": quarantined}
        )
    else:
        version = DatasetVersion(
            dataset=spec.name,
            version=version_id,
            source_uri=source,
            spec_hash=spec.spec_hash(),
            schema_hash=spec.schema_hash(),
            partitions=unique,
            quarantined=quarantined,
            manifest_uri=lake.url_of(path),
        )
        lake.write_json(path, version)
    lake.write_json(lake.dataset(spec.name, "latest.json"), {"version": version_id})
    new = {pid for o in outcomes for pid in o.written}
    return IngestResult(
        version=version,
        new_partitions=[p.partition_id for p in unique if p.partition_id in new],
        reused_partitions=[p.partition_id for p in unique if p.partition_id not in new],
        files_read=files_read,
    )


def in_lake(lake: Lake, dataset: str, partitions: list[PartitionRef]) -> list[PartitionRef]:
    """The partitions as files of ``lake``: a lake restored from a backup, or read at another
    URI, holds manifests and cached results naming the location they were written in."""
    return [
        p
        if p.uri == (uri := lake.url_of(lake.partition(dataset, p.partition_id)))
        else p.model_copy(update={"uri": uri})
        for p in partitions
    ]


def load_version(
    lake: Lake, dataset: str, version: str | None = None, *, schema_hash: str | None = None
) -> DatasetVersion:
    """A dataset version manifest by id, or the latest one written.

    With ``schema_hash``, refuse a version ingested under another schema: its partitions
    lack the spec's columns or hold them with other types.
    """
    if version is None:
        latest = lake.dataset(dataset, "latest.json")
        if not lake.exists(latest):
            raise LakeError(
                f"{lake.uri}: dataset '{dataset}' has no versions yet; run ingestion first"
            )
        version = str(lake.read_json(latest)["version"])
    path = lake.version(dataset, version)
    if not lake.exists(path):
        raise LakeError(f"{lake.url_of(path)}: no such dataset version")
    found = DatasetVersion.model_validate(lake.read_json(path))
    found = found.model_copy(update={"partitions": in_lake(lake, dataset, found.partitions)})
    if schema_hash is not None and found.schema_hash != schema_hash:
        raise LakeError(
            f"dataset '{dataset}' version {found.version} was ingested with other columns or "
            "types than the spec now declares; run ingestion with this spec first"
        )
    return found
