"""The lake operations' Prefect tasks: thin wrappers over the plain functions beside them."""

from __future__ import annotations

from prefect import get_run_logger, task

from tasks.lake import Lake
from tasks.lakeops.backup import backup
from tasks.lakeops.policy import RetentionPolicy
from tasks.lakeops.publish import publish_backup, publish_gc, publish_verify
from tasks.lakeops.sweep import collect_garbage
from tasks.lakeops.verify import verify
from tasks.records import BackupReport, GcReport, VerifyReport
from tasks.runtime.lease import LeaseRecord


@task(name="collect-garbage")
def collect_garbage_task(
    *,
    lake: str,
    policy: RetentionPolicy,
    dataset: str | None,
    apply: bool,
    wait_seconds: float,
) -> GcReport:
    """Mark the lake and, with ``apply``, delete what the policy does not keep."""
    logger = get_run_logger()

    def waiting(runs: list[LeaseRecord]) -> None:
        logger.info(
            "Waiting for %d run(s) using the lake: %s",
            len(runs),
            "; ".join(r.describe() for r in runs),
        )

    report = collect_garbage(
        Lake(lake), policy, dataset=dataset, apply=apply, wait_seconds=wait_seconds, on_wait=waiting
    )
    publish_gc(report)
    return report


@task(name="verify-lake")
def verify_task(*, lake: str, deep: bool) -> VerifyReport:
    """Check every record against the objects it names."""
    report = verify(Lake(lake), deep=deep)
    publish_verify(report)
    return report


@task(name="backup-lake")
def backup_task(*, lake: str, to: str, deep: bool) -> BackupReport:
    """Copy what ``to`` lacks of ``lake``, in dependency order, and verify it."""
    report = backup(Lake(lake), Lake(to), verify_deep=deep)
    publish_backup(report)
    return report
