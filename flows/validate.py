"""Validation stage: the spec's Great Expectations suite on every partition of a dataset version."""

from __future__ import annotations

from prefect import flow

from tasks.errors import ValidationFailed
from tasks.ingest.tasks import load_version_task
from tasks.records import ValidationReport
from tasks.runtime.caching import CacheOptions, map_cached
from tasks.runtime.lease import flow_uses_lake
from tasks.runtime.naming import dataset_run_name
from tasks.runtime.progress import StageProgress, run_logger
from tasks.runtime.runner import stage_task_runner
from tasks.spec import load_spec_task
from tasks.validate.publish import publish_data_docs_link
from tasks.validate.report import failure_message
from tasks.validate.tasks import (
    VALIDATE_CACHE,
    VALIDATE_FILES_CACHE,
    check_expectations_task,
    publish_validation_report_task,
    validate_files_task,
    validate_partition_task,
    write_data_docs_task,
    write_report_task,
)


@flow(name="validate", flow_run_name=dataset_run_name, task_runner=stage_task_runner("validate"))
def validate_flow(
    spec: str,
    lake: str,
    dataset_version: str | None = None,
    cluster: str = "local",
    cache: CacheOptions = CacheOptions(),  # noqa: B008 - immutable in use; Prefect's form default
) -> ValidationReport:
    """Validate a dataset version (default: the latest); fail below the spec's threshold.

    Args:
        spec: Dataset spec, a YAML path (relative to the working directory) or URI,
            e.g. datasets/demo.yaml.
        lake: Lake root where partitions, reports and models live: a local path or
            s3://bucket/prefix.
        dataset_version: The dataset version to validate; empty for the latest ingested.
        cluster: Where the stage's Dask cluster runs: local, kubernetes, a scheduler address
            (tcp://host:8786) or the name of a saved MLOps Dask Cluster block.
        cache: Reuse of cached ingest and validation results: refresh to recompute,
            expiry in days.
    """
    dataset = load_spec_task(spec)
    with flow_uses_lake(lake):
        check_expectations_task(dataset, lake=lake)
        version = load_version_task(lake=lake, spec=dataset, version=dataset_version)
        # Only partitions this suite has not seen yet reach the cluster.
        validated = map_cached(
            validate_partition_task,
            VALIDATE_CACHE,
            lake=lake,
            options=cache,
            mapped="partition",
            items=version.partitions,
            shared={"spec": dataset},
            progress=StageProgress(
                stage="validate",
                dataset=dataset.name,
                total=len(version.partitions),
                unit="partitions",
            ),
        )
        # A packed partition that failed: validate each of its files' rows alone, so that only
        # the files at fault are rejected.
        failed = [
            p
            for p, r in zip(version.partitions, validated.results, strict=True)
            if not r.success and len(p.sources) > 1
        ]
        files = map_cached(
            validate_files_task,
            VALIDATE_FILES_CACHE,
            lake=lake,
            options=cache,
            mapped="partition",
            items=failed,
            shared={"spec": dataset},
        )
        report = write_report_task(
            spec=dataset,
            lake=lake,
            version=version,
            results=validated.results,
            files=[r for found in files.results for r in found],
        )
        publish_validation_report_task(report)
        logger = run_logger("validate", dataset=dataset.name, dataset_version=version.version)
        # The docs show the report; failing to render them must not fail the validation. When
        # partitions were validated now, GX is loaded on the stage's workers: render there.
        if validated.computed or files.computed:
            rendered = write_data_docs_task.submit(
                report=report, spec=dataset, version=version, lake=lake
            )
            rendered.wait()
            docs = rendered.state
        else:
            docs = write_data_docs_task(
                report=report, spec=dataset, version=version, lake=lake, return_state=True
            )
        if docs.is_completed():
            publish_data_docs_link(dataset=dataset.name, version=version.version, uri=docs.result())
        else:
            logger.warning("No Data Docs for this validation: %s", docs.message)
        for uri, reason in report.rejected_files.items():
            logger.warning("Quarantined %s", reason, extra={"source_uri": uri})
        logger.info(
            "Dataset %s version %s: %d/%d landing files accepted, %d partition(s) "
            "(%d validated now, %d reused from the cache; %d packed partition(s) checked per file)",
            dataset.name,
            version.version,
            report.accepted_files,
            report.total_files,
            len(version.partitions),
            validated.computed,
            validated.reused,
            len(failed),
        )
        if not report.passed:
            raise ValidationFailed(failure_message(report, version))
        return report
