"""Ingestion stage: landing files → typed Parquet partitions of bounded size → a dataset
version manifest."""

from __future__ import annotations

from prefect import flow

from tasks.errors import SourceError
from tasks.ingest.plan import run_outcomes
from tasks.ingest.tasks import (
    INGEST_CACHE,
    ingest_split_task,
    list_landing_task,
    plan_ingestion_task,
    publish_ingest_summary_task,
    sweep_temporaries_task,
    write_version_task,
)
from tasks.records import IngestResult
from tasks.runtime.caching import CacheOptions, map_cached
from tasks.runtime.lease import flow_uses_lake
from tasks.runtime.naming import dataset_run_name
from tasks.runtime.progress import StageProgress, run_logger
from tasks.runtime.runner import stage_task_runner
from tasks.spec import load_spec_task


@flow(name="ingest", flow_run_name=dataset_run_name, task_runner=stage_task_runner("ingest"))
def ingest_flow(
    spec: str,
    source: str,
    lake: str,
    cluster: str = "local",
    cache: CacheOptions = CacheOptions(),  # noqa: B008 - immutable in use; Prefect's form default
) -> IngestResult:
    """Ingest every landing file under ``source`` into ``lake`` and write a dataset version.

    Args:
        spec: Dataset spec, a YAML path (relative to the working directory) or URI,
            e.g. datasets/demo.yaml.
        source: Landing folder or file with the .csv, .csv.gz or .parquet files: a path
            or s3:// URI.
        lake: Lake root where partitions, reports and models live: a local path or
            s3://bucket/prefix.
        cluster: Where the stage's Dask cluster runs: local, kubernetes, a scheduler address
            (tcp://host:8786) or the name of a saved MLOps Dask Cluster block.
        cache: Reuse of cached ingest and validation results: refresh to recompute,
            expiry in days.
    """
    dataset = load_spec_task(spec)
    with flow_uses_lake(lake):
        logger = run_logger("ingest", dataset=dataset.name)
        # Writers killed in an earlier run (a lost worker, a SIGKILLed flow) leave temporaries.
        for path in sweep_temporaries_task(lake):
            logger.info("Removed %s, left by a writer that was killed mid-write", path)
        files = list_landing_task(source)
        # Splits of unchanged files are kept as the last run left them; the rest is read now.
        plan = plan_ingestion_task(
            lake=lake, spec=dataset, source=source, files=files, refresh=cache.refresh
        )
        ingested = map_cached(
            ingest_split_task,
            INGEST_CACHE,
            lake=lake,
            options=cache,
            mapped="split",
            items=plan.todo,
            shared={"spec": dataset, "lake": lake, "rewrite": cache.refresh},
            progress=StageProgress(
                stage="ingest", dataset=dataset.name, total=len(plan.todo), unit="splits"
            ),
        )
        outcomes, files_read = run_outcomes(
            plan, ingested.results, ingested.from_cache, expiration=cache.expiration
        )
        if not any(o.partitions for o in outcomes):
            reasons = "\n  ".join(q.reason for o in outcomes for q in o.quarantined)
            raise SourceError(
                f"none of the {len(files)} landing file(s) could be ingested:\n  {reasons}"
            )
        result = write_version_task(
            spec=dataset, lake=lake, source=source, outcomes=outcomes, files_read=files_read
        )
        logger = run_logger("ingest", dataset=dataset.name, dataset_version=result.version.version)
        for record in result.version.quarantined:
            logger.warning("Quarantined %s", record.reason, extra={"source_uri": record.source_uri})
        logger.info(
            "Dataset %s version %s: %d landing file(s) in %d partition(s) (%d new, %d unchanged), "
            "%d file(s) quarantined; %d file(s) read now in %d split(s), %d split(s) kept, "
            "%d from the cache",
            dataset.name,
            result.version.version,
            len(result.version.files),
            len(result.version.partitions),
            len(result.new_partitions),
            len(result.reused_partitions),
            len(result.version.quarantined),
            files_read,
            ingested.computed,
            len(plan.kept),
            ingested.reused,
        )
        publish_ingest_summary_task(result)
        return result
