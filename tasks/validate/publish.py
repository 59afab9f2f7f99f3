"""What the validate stage shows in the Prefect UI: tables per partition and per expectation."""

from __future__ import annotations

from typing import Any

from tasks.records import PartitionValidation, ValidationReport
from tasks.runtime.publish import artifact_key, publish_link, publish_table


def report_table(report: ValidationReport) -> list[dict[str, Any]]:
    """Rows for the Prefect table artifact: one per partition, and one per file of a packed
    partition that failed (validated alone to find the files at fault)."""
    return [
        {
            "source": r.source_uri.rsplit("/", 1)[-1],
            "of": "file" if r.start is not None else "partition",
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
        for r in [*report.partitions, *report.segments]
    ]


def expectation_table(report: ValidationReport) -> list[dict[str, Any]]:
    """Rows for the Prefect table artifact: one per expectation, over all partitions, with
    the landing files it failed in (those at fault, in a packed partition)."""
    by_file: dict[str, list[PartitionValidation]] = {}
    for result in report.segments:
        by_file.setdefault(result.partition_id, []).append(result)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for partition in report.partitions:
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
            if o.success:
                continue
            row["failed"] += 1
            row["unexpected"] += o.unexpected_count or 0
            files = [
                f.source_uri
                for f in by_file.get(partition.partition_id, [])
                if any(
                    not e.success and (e.type, e.column) == (o.type, o.column)
                    for e in f.expectations
                )
            ]
            row["failed in"] += [u.rsplit("/", 1)[-1] for u in files or [partition.source_uri]]
    return [
        {**row, "failed in": ", ".join(row["failed in"])}
        for row in sorted(
            rows.values(), key=lambda r: (-r["failed"], r["expectation"], r["column"])
        )
    ]


def publish_validation_report(report: ValidationReport) -> None:
    """Validation tables: per partition, and per expectation."""
    publish_table(
        key=artifact_key("validation", report.dataset),
        table=report_table(report),
        description=(
            f"Validation of {report.dataset} version {report.dataset_version}: "
            f"{report.accepted_files}/{report.total_files} landing files accepted "
            f"({report.accepted_fraction:.0%}, threshold {report.threshold:.0%}); "
            f"{'passed' if report.passed else 'FAILED'}. Full report: {report.report_uri}"
        ),
    )
    publish_table(
        key=artifact_key("validation-expectations", report.dataset),
        table=expectation_table(report),
        description=(
            f"Expectations on {report.dataset} version {report.dataset_version}: "
            "per expectation, the partitions it failed in and the unexpected values"
        ),
    )


def publish_data_docs_link(*, dataset: str, version: str, uri: str) -> None:
    publish_link(
        key=artifact_key("data-docs", dataset),
        link=uri,
        description=f"Great Expectations Data Docs of {dataset} version {version}",
    )
