"""A dataset version's validation report: partition results aggregated against the spec's
acceptance policy, failures quarantined with their reason, the report persisted."""

from __future__ import annotations

from tasks.errors import ValidationFailed
from tasks.ingest.partitions import file_record_id
from tasks.lake import Lake
from tasks.records import (
    DatasetVersion,
    PartitionRef,
    PartitionValidation,
    QuarantineRecord,
    ValidationReport,
)
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


def files_at_fault(
    partition: PartitionRef, result: PartitionValidation, files: list[PartitionValidation]
) -> dict[str, PartitionValidation]:
    """The landing files a failed partition's result rejects, each with the result saying
    why: the files whose own rows fail (``files``: one result per file of a packed
    partition); all of its files when each passes alone but not together (an expectation
    over the whole table, such as uniqueness across files)."""
    if result.success:
        return {}
    failing = {r.source_uri: r for r in files if not r.success}
    return failing or dict.fromkeys(partition.sources, result)


def write_report(
    *,
    spec: DatasetSpec,
    lake: Lake,
    version: DatasetVersion,
    results: list[PartitionValidation],
    files: list[PartitionValidation] | None = None,
) -> ValidationReport:
    """Aggregate partition results, quarantine the files at fault and persist the report.

    A rejected file's rows are skipped in every partition that holds them; partitions keep
    the rows of the other files. ``files`` are the per-file results of packed partitions
    that failed (``partition.validate_files``).
    """
    partitions = {p.partition_id: p for p in version.partitions}
    # Stored results may predate a rename of their landing file: report today's names.
    results = [
        r.model_copy(update={"source_uri": partitions[r.partition_id].label})
        if r.partition_id in partitions
        else r
        for r in results
    ]
    per_file: dict[str, list[PartitionValidation]] = {}
    for r in files or []:
        per_file.setdefault(r.partition_id, []).append(r)
    at_fault: dict[str, tuple[PartitionRef, PartitionValidation]] = {}
    for result in results:
        partition = partitions.get(result.partition_id)
        if partition is None:
            continue
        found = files_at_fault(partition, result, per_file.get(partition.partition_id, []))
        for uri, why in found.items():
            at_fault.setdefault(uri, (partition, why))
    accepted, rejected, excluded = [], [], {}
    for partition in version.partitions:
        skipped = [(s.start, s.stop) for s in partition.segments if s.source_uri in at_fault]
        if sum(stop - start for start, stop in skipped) >= partition.rows:
            rejected.append(partition.partition_id)
            continue
        accepted.append(partition.partition_id)
        if skipped:
            excluded[partition.partition_id] = skipped
    reasons = {}
    for uri, (partition, why) in sorted(at_fault.items()):
        record = validation_quarantine(spec, uri, partition, why)
        lake.write_json(lake.quarantine(spec.name, record.record_id), record)
        reasons[uri] = record.reason
    # Unreadable files count against the threshold: they are landing data we could not use.
    total_files = len(version.files)
    accepted_files = total_files - len(at_fault) - len(version.quarantined)
    fraction = accepted_files / total_files if total_files else 0.0
    threshold = spec.validation.min_accepted_fraction
    path = report_path(lake, spec, version.version)
    report = ValidationReport(
        dataset=spec.name,
        dataset_version=version.version,
        expectations_hash=spec.expectations_hash(),
        partitions=sorted(results, key=lambda r: r.source_uri),
        accepted=sorted(accepted),
        rejected=sorted(rejected),
        ingest_quarantined=len(version.quarantined),
        total_files=total_files,
        accepted_files=accepted_files,
        rejected_files=reasons,
        excluded_rows=excluded,
        segments=sorted(files or [], key=lambda r: (r.partition_id, r.start or 0)),
        accepted_fraction=fraction,
        threshold=threshold,
        passed=bool(accepted) and fraction >= threshold,
        report_uri=lake.url_of(path),
    )
    lake.write_json(path, report)
    return report


def validation_quarantine(
    spec: DatasetSpec, uri: str, partition: PartitionRef, why: PartitionValidation
) -> QuarantineRecord:
    """The record of a landing file rejected by validation."""
    sha = next(s.sha256 for s in partition.segments if s.source_uri == uri)
    reason = failure_reason(why)
    if why.source_uri != uri:
        reason = f"{uri}: its partition failed as a whole: {reason}"
    return QuarantineRecord(
        record_id=file_record_id(sha, spec.schema_hash()),
        stage="validate",
        source_uri=uri,
        partition_id=partition.partition_id,
        reason=reason,
        report=why,
    )


def failure_message(report: ValidationReport, version: DatasetVersion) -> str:
    """Why a report did not pass, naming every file that was set aside."""
    lines = [
        f"validation failed for dataset '{report.dataset}' version {report.dataset_version}: "
        f"{report.accepted_files} of {report.total_files} landing file(s) accepted "
        f"({report.accepted_fraction:.0%}), the spec requires at least {report.threshold:.0%}"
    ]
    lines += [f"  {q.reason}" for q in version.quarantined]
    lines += [f"  {reason}" for reason in report.rejected_files.values()]
    return "\n".join(lines)


def load_report(lake: Lake, spec: DatasetSpec, version: DatasetVersion) -> ValidationReport:
    path = report_path(lake, spec, version.version)
    if not lake.exists(path):
        raise ValidationFailed(
            f"dataset '{spec.name}' version {version.version} has not been validated with the "
            "current expectations; run validation first"
        )
    return ValidationReport.model_validate(lake.read_json(path))
