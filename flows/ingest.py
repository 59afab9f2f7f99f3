"""Ingestion stage: landing files → typed Parquet partitions → a dataset version manifest."""

from __future__ import annotations

from prefect import flow, get_run_logger, unmapped

from tasks.artifacts import publish_ingest_summary
from tasks.cluster import stage_task_runner
from tasks.errors import SourceError
from tasks.ingest import build_version_task, discover_sources_task, ingest_file_task
from tasks.models import IngestResult
from tasks.spec import load_spec_task


@flow(name="ingest", task_runner=stage_task_runner("ingest"))
def ingest_flow(spec: str, source: str, lake: str, cluster: str = "local") -> IngestResult:
    """Ingest every landing file under ``source`` into ``lake`` and write a dataset version.

    ``cluster`` (read by the stage's task runner) is ``local``, ``kubernetes``, a scheduler
    address (``tcp://host:port``) or the name of a saved MLOps Dask Cluster block.
    """
    dataset = load_spec_task(spec)
    files = discover_sources_task(source)
    outcomes = ingest_file_task.map(
        source_uri=files, spec=unmapped(dataset), lake=unmapped(lake)
    ).result()
    if not any(o.partition for o in outcomes):
        reasons = "\n  ".join(o.quarantined.reason for o in outcomes if o.quarantined)
        raise SourceError(
            f"none of the {len(files)} landing file(s) could be ingested:\n  {reasons}"
        )
    result = build_version_task(spec=dataset, lake=lake, source=source, outcomes=outcomes)
    logger = get_run_logger()
    for record in result.version.quarantined:
        logger.warning("Quarantined %s", record.reason)
    logger.info(
        "Dataset %s version %s: %d partitions (%d new, %d unchanged), %d file(s) quarantined",
        dataset.name,
        result.version.version,
        len(result.version.partitions),
        len(result.new_partitions),
        len(result.reused_partitions),
        len(result.version.quarantined),
    )
    publish_ingest_summary(result)
    return result
