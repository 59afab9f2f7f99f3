"""What lake operations show in the Prefect UI: tables of what gc deleted, verify found and
a backup copied."""

from __future__ import annotations

from tasks.records import BackupReport, GcReport, VerifyReport
from tasks.runtime.publish import artifact_key, publish_table


def gc_table(report: GcReport) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [
        {"kind": kind, "objects": t.objects, "bytes": t.bytes} for kind, t in report.garbage.items()
    ]
    rows.append({"kind": "total", "objects": report.garbage_objects, "bytes": report.garbage_bytes})
    return rows


def publish_gc(report: GcReport) -> None:
    verb = "Deleted" if report.applied else "Would delete (dry run)"
    publish_table(
        key=artifact_key("lake-gc", report.dataset or "all"),
        table=gc_table(report),
        description=f"{verb} {report.garbage_objects} of {report.objects} object(s), "
        f"{report.garbage_bytes:,} of {report.bytes:,} bytes, in {report.lake}",
    )


def publish_verify(report: VerifyReport) -> None:
    rows = [p.model_dump() for p in report.problems] or [{"uri": report.lake, "problem": "none"}]
    publish_table(
        key=artifact_key("lake-verify", "deep" if report.deep else "quick"),
        table=rows,
        description=f"{len(report.problems)} problem(s) in {report.lake}; checked "
        + ", ".join(f"{n} {k}" for k, n in report.checked.items()),
    )


def publish_backup(report: BackupReport) -> None:
    publish_table(
        key=artifact_key("lake-backup", "latest"),
        table=[
            {
                "source": report.source,
                "target": report.target,
                "copied": report.copied,
                "bytes": report.copied_bytes,
                "skipped": report.skipped,
                "problems": len(report.verified.problems),
            }
        ],
        description=f"Copied {report.copied} of {report.objects} object(s) "
        f"in {report.seconds:.1f} s",
    )
