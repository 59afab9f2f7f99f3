"""A dataset version's validation report: partition results aggregated against the spec's
acceptance policy, failures quarantined with their reason, the report persisted."""

from __future__ import annotations

from tasks.errors import ValidationFailed
from tasks.lake import Lake
from tasks.records import DatasetVersion, PartitionValidation, QuarantineRecord, ValidationReport
from tasks.spec import DatasetSpec


def report_path(lake: Lake, spec: DatasetSpec, version: str) -> str:
    """Where the report for a dataset version under this suite and policy is kept."""
    return lake.validation(spec.name, f"{version}-{spec.report_hash()}")


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


def write_report(
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


def load_report(lake: Lake, spec: DatasetSpec, version: DatasetVersion) -> ValidationReport:
    path = report_path(lake, spec, version.version)
    if not lake.exists(path):
        raise ValidationFailed(
            f"dataset '{spec.name}' version {version.version} has not been validated with the "
            "current expectations; run validation first"
        )
    return ValidationReport.model_validate(lake.read_json(path))
