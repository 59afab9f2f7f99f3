"""The validate stage's Prefect tasks: thin wrappers over the plain functions beside them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task

from tasks.lake import Lake
from tasks.records import DatasetVersion, PartitionRef, PartitionValidation, ValidationReport
from tasks.retries import IO_RETRIES
from tasks.runtime.caching import ContentKey
from tasks.spec import DatasetSpec
from tasks.validate.data_docs import write_data_docs
from tasks.validate.expectations import check_expectations_once
from tasks.validate.partition import RESULT_FORMAT, validate_files, validate_partition
from tasks.validate.publish import publish_validation_report
from tasks.validate.report import load_report, write_report


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


def files_identity(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What a ``validate-files`` result depends on: the partition's content (its id), its
    files' rows in it (the segments), and the suite."""
    partition: PartitionRef = inputs["partition"]
    spec: DatasetSpec = inputs["spec"]
    return {
        "partition": partition.partition_id,
        "segments": [[s.sha256, s.start, s.rows] for s in partition.segments],
        "suite": spec.expectations_hash(),
        "format": RESULT_FORMAT,
    }


VALIDATE_FILES_CACHE = ContentKey(identity=files_identity)


@task(name="validate-files", **IO_RETRIES)
def validate_files_task(*, partition: PartitionRef, spec: DatasetSpec) -> list[PartitionValidation]:
    """Validate each file's rows of a packed partition that failed, on a Dask worker."""
    return validate_files(partition=partition, spec=spec)


@task(name="write-report")
def write_report_task(
    *,
    spec: DatasetSpec,
    lake: str,
    version: DatasetVersion,
    results: list[PartitionValidation],
    files: list[PartitionValidation],
) -> ValidationReport:
    """Quarantine the files at fault and persist the report."""
    return write_report(spec=spec, lake=Lake(lake), version=version, results=results, files=files)


@task(name="load-report", **IO_RETRIES)
def load_report_task(*, lake: str, spec: DatasetSpec, version: DatasetVersion) -> ValidationReport:
    """Read the validation report of a dataset version under the spec's suite and policy."""
    return load_report(Lake(lake), spec, version)


@task(name="write-data-docs", **IO_RETRIES)
def write_data_docs_task(
    *, report: ValidationReport, spec: DatasetSpec, version: DatasetVersion, lake: str
) -> str:
    """Great Expectations Data Docs of this validation, in the lake; the index's URI."""
    return write_data_docs(report, spec, version, Lake(lake))


@task(name="publish-validation-report")
def publish_validation_report_task(report: ValidationReport) -> None:
    """Validation tables: per partition, and per expectation."""
    publish_validation_report(report)
