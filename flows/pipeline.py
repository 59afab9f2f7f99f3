"""The whole path: ingest → validate → train → promote, each stage on a cluster sized for it."""

from __future__ import annotations

from prefect import flow

from flows.ingest import ingest_flow
from flows.promote import promote_flow
from flows.train import train_flow
from flows.validate import validate_flow
from tasks.ingest.tasks import list_landing_task
from tasks.pipeline import StageClock, pipeline_result, record_run_metrics_task
from tasks.records import PipelineResult
from tasks.runtime.caching import CacheOptions
from tasks.runtime.lease import flow_uses_lake
from tasks.runtime.naming import dataset_run_name
from tasks.runtime.runner import (
    closing_in_background,
    resolve_cluster_task,
    stage_task_runner,
    start_forkserver_early,
)
from tasks.spec import load_spec_task
from tasks.validate.tasks import check_expectations_task


@flow(name="ml-pipeline", flow_run_name=dataset_run_name)
def ml_pipeline(
    spec: str,
    source: str,
    lake: str,
    cluster: str = "local",
    cache: CacheOptions = CacheOptions(),  # noqa: B008 - immutable in use; Prefect's form default
) -> PipelineResult:
    """Take the landing files under ``source`` to a (possibly new) champion model in ``lake``.

    Each stage gets its own Dask cluster, sized for the partitions it processes.

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
    # A bad spec, cluster config, landing location or expectation fails here, before any
    # data is touched; the expectation check goes last, as it records in the lake that it passed.
    dataset = load_spec_task(spec)
    config = resolve_cluster_task(cluster)
    landing = list_landing_task(source)
    check_expectations_task(dataset, lake=lake)
    # Each stage's cluster closes while the next starts; all are closed before the lease ends.
    with flow_uses_lake(lake), closing_in_background() as closings:
        clock = StageClock()
        with clock("ingest"):
            ingested = ingest_flow.with_options(
                task_runner=stage_task_runner(
                    "ingest",
                    cluster=config,
                    partitions=len(landing),
                    total_bytes=sum(f.bytes for f in landing),
                    closings=closings,
                )
            )(spec=spec, source=source, lake=lake, cluster=cluster, cache=cache)
        version = ingested.version
        # New data: training follows; its local workers (and validation's) fork from a
        # forkserver that imports while the stages before them run.
        start_forkserver_early(config, new_partitions=len(ingested.new_partitions))
        with clock("validate"):
            report = validate_flow.with_options(
                task_runner=stage_task_runner(
                    "validate",
                    cluster=config,
                    partitions=len(version.partitions),
                    total_bytes=version.bytes,
                    closings=closings,
                )
            )(spec=spec, lake=lake, dataset_version=version.version, cluster=cluster, cache=cache)
        # Training and promotion both work on the accepted partitions only.
        accepted = {
            "partitions": len(report.accepted),
            "total_bytes": version.bytes_of(report.accepted),
        }
        with clock("train"):
            candidate = train_flow.with_options(
                task_runner=stage_task_runner(
                    "train", cluster=config, closings=closings, **accepted
                )
            )(spec=spec, lake=lake, dataset_version=version.version, cluster=cluster)
        with clock("promote"):
            decision = promote_flow.with_options(
                task_runner=stage_task_runner(
                    "promote", cluster=config, closings=closings, **accepted
                )
            )(spec=spec, lake=lake, model_version=candidate.version, cluster=cluster)

        result = pipeline_result(
            lake=lake,
            ingested=ingested,
            report=report,
            candidate=candidate,
            decision=decision,
            stage_seconds=clock.seconds,
        )
        record_run_metrics_task(result)
        return result
