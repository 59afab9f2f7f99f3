"""Validation: the spec's Great Expectations suite, run on every partition where it is processed.

Great Expectations has no Dask engine, so each partition is validated as a pandas frame on
the Dask worker that reads it, with one ephemeral GX context per worker process (built on
first use: importing GX costs seconds, so it is never done at import time).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq
from prefect import task

from tasks.caching import ContentKey
from tasks.errors import SpecError
from tasks.lake import Lake
from tasks.models import (
    DatasetVersion,
    ExpectationOutcome,
    PartitionRef,
    PartitionValidation,
    QuarantineRecord,
    ValidationReport,
)
from tasks.retries import IO_RETRIES
from tasks.spec import DatasetSpec, ExpectationSpec
from tasks.storage import open_file

if TYPE_CHECKING:
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_suite import ExpectationSuite

# Bumped when PartitionValidation gains what older cached results lack (2: GX's own result).
RESULT_FORMAT = 2

_lock = threading.Lock()
_state: dict[str, Any] = {}


def expectation(config: ExpectationSpec) -> Any:
    """The GX expectation object for one configured expectation."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    return ExpectationConfiguration(
        type=config.type, kwargs=dict(config.kwargs), meta=dict(config.meta)
    ).to_domain_obj()


def check_expectations(spec: DatasetSpec, *, source: str = "<spec>") -> None:
    """Build every expectation of the spec so a bad one fails before any data is touched."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    problems = []
    for i, config in enumerate(spec.expectations):
        try:
            expectation(config)
        except Exception as err:  # GX raises several unrelated types for a bad config
            detail = " ".join(str(err).split())
            problems.append(f"{source}: expectations.{i} ({config.type}): {detail}")
    if problems:
        raise SpecError("invalid expectation(s)\n  " + "\n  ".join(problems))


def ephemeral_context(data_docs_sites: dict[str, Any] | None = None) -> Any:
    """A GX context held in memory: no project folder, no analytics, no progress bars."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    return gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
            data_docs_sites=data_docs_sites,
        ),
    )


def _gx_batch_and_suite(
    expectations: list[ExpectationSpec], key: str
) -> tuple[BatchDefinition, ExpectationSuite]:
    """This process's GX context and the suite for ``key``, built once and reused."""
    with _lock:
        if "context" not in _state:
            context = ephemeral_context()
            asset = context.data_sources.add_pandas("partitions").add_dataframe_asset("partition")
            _state["context"] = context
            _state["batch"] = asset.add_batch_definition_whole_dataframe("whole")
            _state["suites"] = {}
        suites: dict[str, ExpectationSuite] = _state["suites"]
        if key not in suites:
            import great_expectations as gx

            suite = gx.ExpectationSuite(name=f"suite-{key}")
            for config in expectations:
                suite.add_expectation(expectation(config))
            suites[key] = suite
        return _state["batch"], suites[key]


def _exception_message(info: dict[str, Any]) -> str | None:
    """GX reports errors flat or keyed by the metric that raised; either way, the first message."""
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _outcome(result: Any) -> ExpectationOutcome:
    config = result.expectation_config
    details = result.result or {}
    error = _exception_message(result.exception_info or {})
    partial = details.get("partial_unexpected_list") or []
    return ExpectationOutcome(
        type=config.type,
        column=config.kwargs.get("column"),
        success=bool(result.success),
        unexpected_count=details.get("unexpected_count"),
        unexpected_percent=details.get("unexpected_percent"),
        partial_unexpected=[str(v) for v in partial[:5]],
        error=error,
    )


def validate_frame(
    frame: pd.DataFrame,
    expectations: list[ExpectationSpec],
    *,
    suite_key: str,
    partition_id: str,
    source_uri: str,
) -> PartitionValidation:
    """Run the expectations on one in-memory partition."""
    batch_definition, suite = _gx_batch_and_suite(expectations, suite_key)
    # The context is shared by the worker's threads and GX does not promise thread safety;
    # partitions still validate in parallel across worker processes.
    with _lock:
        result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    outcomes = [_outcome(r) for r in result.results]
    return PartitionValidation(
        partition_id=partition_id,
        source_uri=source_uri,
        success=bool(result.success),
        rows=len(frame),
        evaluated=len(outcomes),
        failed=sum(not o.success for o in outcomes),
        unexpected_total=sum(o.unexpected_count or 0 for o in outcomes if not o.success),
        expectations=outcomes,
        gx_result=result.to_json_dict(),
    )


def read_partition_frame(uri: str) -> pd.DataFrame:
    """One partition as pandas (read where it is processed)."""
    with open_file(uri, "rb") as fh:
        return pq.read_table(fh).to_pandas()


def report_path(lake: Lake, spec: DatasetSpec, version: str) -> str:
    """Where the report for a dataset version under this suite and policy is kept."""
    return lake.validation(spec.name, f"{version}-{spec.report_hash()}")


def validate_partition(*, partition: PartitionRef, spec: DatasetSpec) -> PartitionValidation:
    """Validate one partition (where it is processed: on a Dask worker)."""
    return validate_frame(
        read_partition_frame(partition.uri),
        spec.all_expectations(),
        suite_key=spec.expectations_hash(),
        partition_id=partition.partition_id,
        source_uri=partition.source_uri,
    )


def failure_reason(result: PartitionValidation) -> str:
    """A one-line summary of what failed, for quarantine records and errors."""
    parts = []
    for o in result.expectations:
        if o.success:
            continue
        where = f"{o.type}({o.column})" if o.column else o.type
        if o.error:
            parts.append(f"{where}: error: {o.error}")
        elif o.unexpected_count is not None:
            sample = f", e.g. {', '.join(o.partial_unexpected[:3])}" if o.partial_unexpected else ""
            parts.append(f"{where}: {o.unexpected_count} unexpected value(s){sample}")
        else:
            parts.append(f"{where}: failed")
    return (
        f"{result.source_uri}: failed {result.failed} of {result.evaluated} expectations: "
        + "; ".join(parts)
    )


def build_report(
    *,
    spec: DatasetSpec,
    lake: Lake,
    version: DatasetVersion,
    results: list[PartitionValidation],
) -> ValidationReport:
    """Aggregate partition results, quarantine the failures and persist the report."""
    # Stored results may predate a rename of their landing file: report today's names.
    names = {p.partition_id: p.source_uri for p in version.partitions}
    results = [
        r.model_copy(update={"source_uri": names.get(r.partition_id, r.source_uri)})
        for r in results
    ]
    accepted = [r.partition_id for r in results if r.success]
    rejected = [r for r in results if not r.success]
    for r in rejected:
        record = QuarantineRecord(
            record_id=r.partition_id,
            stage="validate",
            source_uri=r.source_uri,
            partition_id=r.partition_id,
            reason=failure_reason(r),
            report=r,
        )
        lake.write_json(lake.quarantine(spec.name, record.record_id), record)
    # Unreadable files count against the threshold: they are landing data we could not use.
    total_files = len(version.partitions) + len(version.quarantined)
    fraction = len(accepted) / total_files if total_files else 0.0
    threshold = spec.validation.min_accepted_fraction
    path = report_path(lake, spec, version.version)
    report = ValidationReport(
        dataset=spec.name,
        dataset_version=version.version,
        expectations_hash=spec.expectations_hash(),
        partitions=sorted(results, key=lambda r: r.source_uri),
        accepted=sorted(accepted),
        rejected=sorted(r.partition_id for r in rejected),
        ingest_quarantined=len(version.quarantined),
        total_files=total_files,
        accepted_fraction=fraction,
        threshold=threshold,
        passed=bool(accepted) and fraction >= threshold,
        report_uri=lake.url_of(path),
    )
    lake.write_json(path, report)
    return report


def failure_message(report: ValidationReport, version: DatasetVersion) -> str:
    """Why a report did not pass, naming every file that was set aside."""
    lines = [
        f"validation failed for dataset '{report.dataset}' version {report.dataset_version}: "
        f"{len(report.accepted)} of {report.total_files} landing file(s) accepted "
        f"({report.accepted_fraction:.0%}), the spec requires at least {report.threshold:.0%}"
    ]
    lines += [f"  {q.reason}" for q in version.quarantined]
    lines += [f"  {failure_reason(r)}" for r in report.partitions if not r.success]
    return "\n".join(lines)


def report_table(report: ValidationReport) -> list[dict[str, Any]]:
    """Rows for the Prefect table artifact: one per partition."""
    return [
        {
            "source": r.source_uri.rsplit("/", 1)[-1],
            "partition": r.partition_id,
            "success": r.success,
            "rows": r.rows,
            "evaluated": r.evaluated,
            "failed": r.failed,
            "unexpected": r.unexpected_total,
            "failed expectations": ", ".join(
                f"{o.type}({o.column})" if o.column else o.type
                for o in r.expectations
                if not o.success
            ),
        }
        for r in report.partitions
    ]


def expectation_table(report: ValidationReport) -> list[dict[str, Any]]:
    """Rows for the Prefect table artifact: one per expectation, over all partitions."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for partition in report.partitions:
        name = partition.source_uri.rsplit("/", 1)[-1]
        for o in partition.expectations:
            row = rows.setdefault(
                (o.type, o.column or ""),
                {
                    "expectation": o.type,
                    "column": o.column or "",
                    "partitions": 0,
                    "failed": 0,
                    "unexpected": 0,
                    "failed in": [],
                },
            )
            row["partitions"] += 1
            if not o.success:
                row["failed"] += 1
                row["unexpected"] += o.unexpected_count or 0
                row["failed in"].append(name)
    return [
        {**row, "failed in": ", ".join(row["failed in"])}
        for row in sorted(
            rows.values(), key=lambda r: (-r["failed"], r["expectation"], r["column"])
        )
    ]


def gx_version() -> str:
    """The installed GX version, without importing GX (that alone takes seconds)."""
    from importlib.metadata import version

    return version("great-expectations")


def checked_record(lake: Lake, spec: DatasetSpec) -> str:
    """Where a lake records that the spec's suite builds under the installed GX."""
    name = f"{spec.expectations_hash()}-gx{gx_version()}.json"
    return lake.path("runs", "checks", "expectations", name)


def check_expectations_once(spec: DatasetSpec, lake: Lake | None) -> None:
    """``check_expectations``, skipped when ``lake`` records this suite passed it under this
    GX: a run with nothing new then never imports GX in the flow process. The record is only
    written after a successful check, so a bad spec leaves the lake untouched."""
    if lake is not None and lake.exists(checked_record(lake, spec)):
        return
    check_expectations(spec, source=f"dataset spec '{spec.name}'")
    if lake is not None:
        lake.write_json(
            checked_record(lake, spec), {"suite": spec.expectations_hash(), "gx": gx_version()}
        )


# Tasks ---------------------------------------------------------------------------------------
@task(name="check-expectations")
def check_expectations_task(spec: DatasetSpec, lake: str | None = None) -> None:
    """Fail fast on an expectation config GX cannot build (once per suite, GX and lake)."""
    check_expectations_once(spec, Lake(lake) if lake else None)


def validation_identity(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What a ``validate-partition`` result depends on (its cache key, ``tasks/caching.py``).

    The partition id hashes the partition's content; the suite hash covers every
    expectation. The landing file's name is left out: ``build_report`` reports today's.
    """
    partition: PartitionRef = inputs["partition"]
    spec: DatasetSpec = inputs["spec"]
    return {
        "partition": partition.partition_id,
        "suite": spec.expectations_hash(),
        "format": RESULT_FORMAT,
    }


VALIDATE_CACHE = ContentKey(identity=validation_identity)


@task(name="validate-partition", **IO_RETRIES)
def validate_partition_task(*, partition: PartitionRef, spec: DatasetSpec) -> PartitionValidation:
    """Validate one partition on a Dask worker."""
    return validate_partition(partition=partition, spec=spec)


@task(name="write-validation-report")
def build_report_task(
    *, spec: DatasetSpec, lake: str, version: DatasetVersion, results: list[PartitionValidation]
) -> ValidationReport:
    """Quarantine failing partitions and persist the report."""
    return build_report(spec=spec, lake=Lake(lake), version=version, results=results)
