"""The whole path: ingest → validate → train → promote, each stage on a cluster sized for it."""

from __future__ import annotations

from prefect import flow

from flows.ingest import ingest_flow
from flows.promote import promote_flow
from flows.train import train_flow
from flows.validate import validate_flow
from tasks.cluster import stage_task_runner
from tasks.ingest import discover_sources_task
from tasks.models import PipelineResult
from tasks.pipeline import pipeline_result
from tasks.spec import load_spec_task
from tasks.validate import check_expectations_task


@flow(name="ml-pipeline")
def ml_pipeline(spec: str, source: str, lake: str) -> PipelineResult:
    """Take the landing files under ``source`` to a (possibly new) champion model in ``lake``.

    ``spec`` is the dataset spec (a YAML path or URI); ``source`` and ``lake`` are local
    paths or ``s3://`` URIs.
    """
    # A bad spec or expectation fails here, before any data is touched.
    check_expectations_task(load_spec_task(spec))
    files = discover_sources_task(source)

    ingested = ingest_flow.with_options(task_runner=stage_task_runner(partitions=len(files)))(
        spec=spec, source=source, lake=lake
    )
    version = ingested.version
    report = validate_flow.with_options(
        task_runner=stage_task_runner(partitions=len(version.partitions))
    )(spec=spec, lake=lake, dataset_version=version.version)
    candidate = train_flow.with_options(
        task_runner=stage_task_runner(partitions=len(report.accepted))
    )(spec=spec, lake=lake, dataset_version=version.version)
    decision = promote_flow.with_options(
        task_runner=stage_task_runner(partitions=len(report.accepted))
    )(spec=spec, lake=lake, model_version=candidate.version)

    return pipeline_result(
        lake=lake, ingested=ingested, report=report, candidate=candidate, decision=decision
    )
