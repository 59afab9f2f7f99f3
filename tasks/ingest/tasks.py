"""The ingest stage's Prefect tasks: thin wrappers over the plain functions beside them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task

from tasks.ingest.landing import list_landing
from tasks.ingest.partitions import ingest_file
from tasks.ingest.publish import publish_ingest_summary
from tasks.ingest.versions import load_version, write_version
from tasks.lake import Lake
from tasks.records import DatasetVersion, IngestOutcome, IngestResult, LandingFile
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


def ingest_identity(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What an ``ingest-file`` result depends on: its cache key (``runtime/caching.py``)."""
    source: LandingFile = inputs["source"]
    spec: DatasetSpec = inputs["spec"]
    # The URI is part of it: the outcome names the file it came from.
    return {
        "source": source.uri,
        "content": source.tag,
        "schema": spec.schema_hash(),
        "lake": inputs["lake"],
    }


INGEST_CACHE = ContentKey(identity=ingest_identity)


@task(name="ingest-file", **IO_RETRIES)
def ingest_file_task(
    *, source: LandingFile, spec: DatasetSpec, lake: str, rewrite: bool = False
) -> IngestOutcome:
    """Ingest one landing file on a Dask worker."""
    return ingest_file(source_uri=source.uri, spec=spec, lake=Lake(lake), rewrite=rewrite)


@task(name="load-version", **IO_RETRIES)
def load_version_task(*, lake: str, spec: DatasetSpec, version: str | None) -> DatasetVersion:
    """Read a dataset version manifest (default: the latest) that matches the spec's schema."""
    return load_version(Lake(lake), spec.name, version, schema_hash=spec.schema_hash())


@task(name="write-version")
def write_version_task(
    *, spec: DatasetSpec, lake: str, source: str, outcomes: list[IngestOutcome]
) -> IngestResult:
    """Write the version manifest for this run's partitions."""
    return write_version(spec=spec, lake=Lake(lake), source=source, outcomes=outcomes)


@task(name="publish-ingest-summary")
def publish_ingest_summary_task(result: IngestResult) -> None:
    """Table of this run's partitions and quarantined files."""
    publish_ingest_summary(result)
