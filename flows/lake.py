"""Lake operations: garbage collection, integrity checks and backups, as flows to deploy on
a schedule (see ``prefect.yaml``) or call as functions."""

from __future__ import annotations

from prefect import flow

from tasks.errors import LakeError
from tasks.lakeops.policy import RetentionPolicy
from tasks.lakeops.tasks import backup_task, collect_garbage_task, verify_task
from tasks.records import BackupReport, GcReport, VerifyReport


@flow(name="lake-gc")
def gc_flow(
    lake: str,
    dataset: str | None = None,
    apply: bool = False,
    policy: RetentionPolicy = RetentionPolicy(),  # noqa: B008 - frozen; Prefect's form default
    wait_seconds: float = 600.0,
) -> GcReport:
    """Delete what no kept model or dataset version needs (a dry run unless ``apply``).

    Args:
        lake: Lake root: a local path or s3://bucket/prefix.
        dataset: Only this dataset's (and model's) objects; empty: the whole lake.
        apply: Delete; without it, only report what would be deleted.
        policy: What is kept: champions of the alias history, young model versions, the
            newest dataset versions, and anything within the grace period.
        wait_seconds: How long to wait for runs using the lake to finish before giving up
            (nothing is deleted then).
    """
    return collect_garbage_task(
        lake=lake, policy=policy, dataset=dataset, apply=apply, wait_seconds=wait_seconds
    )


@flow(name="lake-verify")
def verify_flow(lake: str, deep: bool = False) -> VerifyReport:
    """Check that every record's objects exist with their recorded sizes (and, ``deep``,
    hashes); the run fails naming each problem.

    Args:
        lake: Lake root: a local path or s3://bucket/prefix.
        deep: Also read every partition and model file and check its SHA-256.
    """
    report = verify_task(lake=lake, deep=deep)
    if not report.ok:
        raise LakeError(
            f"{len(report.problems)} problem(s) in {lake}:\n"
            + "\n".join(f"{p.uri}: {p.problem}" for p in report.problems)
        )
    return report


@flow(name="lake-backup")
def backup_flow(lake: str, to: str, deep: bool = False) -> BackupReport:
    """Copy what the backup lacks of the lake (data, then records, then pointers) and verify
    the backup; restoring is the same flow the other way.

    Args:
        lake: The lake to back up: a local path or s3://bucket/prefix.
        to: The backup: an empty location or an earlier backup of this lake.
        deep: Verify the backup by re-hashing its data (slower), not only sizes.
    """
    report = backup_task(lake=lake, to=to, deep=deep)
    if not report.verified.ok:
        raise LakeError(
            f"the backup {to} has {len(report.verified.problems)} problem(s):\n"
            + "\n".join(f"{p.uri}: {p.problem}" for p in report.verified.problems)
        )
    return report
