"""The ingest stage's Prefect tasks: thin wrappers over the plain functions beside them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task

from tasks.ingest.index import plan_ingestion, write_index
from tasks.ingest.landing import list_landing
from tasks.ingest.partitions import ingest_split
from tasks.ingest.publish import publish_ingest_summary
from tasks.ingest.versions import load_version, write_version
from tasks.lake import Lake
from tasks.records import (
    DatasetVersion,
    IngestPlan,
    IngestResult,
    LandingFile,
    Split,
    SplitOutcome,
)
from tasks.retries import IO_RETRIES
from tasks.runtime.caching import ContentKey
from tasks.spec import DatasetSpec


@task(name="list-landing", **IO_RETRIES)
def list_landing_task(source: str) -> list[LandingFile]:
    """List the landing files to ingest, with their sizes and content tags."""
    return list_landing(source)


@task(name="sweep-temporaries", **IO_RETRIES)
def sweep_temporaries_task(lake: str) -> list[str]:
    """Reclaim temporary files of lake writers that were killed mid-write (see Lake)."""
    return Lake(lake).sweep_temporaries()


@task(name="plan-ingestion", **IO_RETRIES)
def plan_ingestion_task(
    *, lake: str, spec: DatasetSpec, source: str, files: list[LandingFile], refresh: bool
) -> IngestPlan:
    """Keep the splits whose files are unchanged; group the other files into new splits."""
    return plan_ingestion(Lake(lake), spec, source, files, refresh=refresh)


def ingest_identity(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What an ``ingest-split`` result depends on: its cache key (``runtime/caching.py``).

    The split id hashes its files' URIs and content tags, the schema and the partition
    size; the lake is where its partitions are.
    """
    split: Split = inputs["split"]
    return {"split": split.split_id, "lake": inputs["lake"]}


INGEST_CACHE = ContentKey(identity=ingest_identity)


@task(name="ingest-split", **IO_RETRIES)
def ingest_split_task(
    *, split: Split, spec: DatasetSpec, lake: str, rewrite: bool = False
) -> SplitOutcome:
    """Ingest one split's landing files into bounded partitions on a Dask worker."""
    return ingest_split(split=split, spec=spec, lake=Lake(lake), rewrite=rewrite)


@task(name="load-version", **IO_RETRIES)
def load_version_task(*, lake: str, spec: DatasetSpec, version: str | None) -> DatasetVersion:
    """Read a dataset version manifest (default: the latest) that matches the spec's schema."""
    return load_version(Lake(lake), spec.name, version, schema_hash=spec.schema_hash())


@task(name="write-version", **IO_RETRIES)
def write_version_task(
    *, spec: DatasetSpec, lake: str, source: str, outcomes: list[SplitOutcome], files_read: int
) -> IngestResult:
    """Write the version manifest, then the landing index the next run keeps splits from."""
    store = Lake(lake)
    result = write_version(
        spec=spec, lake=store, source=source, outcomes=outcomes, files_read=files_read
    )
    write_index(store, spec, source, outcomes)
    return result


@task(name="publish-ingest-summary")
def publish_ingest_summary_task(result: IngestResult) -> None:
    """Table of this run's partitions and quarantined files."""
    publish_ingest_summary(result)
