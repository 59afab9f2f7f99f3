"""What one pipeline run did, assembled from the four stages' results."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from tasks.models import (
    IngestResult,
    ModelCandidate,
    PipelineResult,
    PromotionDecision,
    ValidationReport,
)
from tasks.validate import failure_reason


def pipeline_result(
    *,
    lake: str,
    ingested: IngestResult,
    report: ValidationReport,
    candidate: ModelCandidate,
    decision: PromotionDecision,
    stage_seconds: dict[str, float],
) -> PipelineResult:
    version = ingested.version
    accepted = set(report.accepted)
    quarantined = [q.reason for q in version.quarantined] + [
        failure_reason(p) for p in report.partitions if not p.success
    ]
    return PipelineResult(
        dataset=version.dataset,
        dataset_version=version.version,
        partitions_total=report.total_files,
        partitions_accepted=len(accepted),
        partitions_quarantined=report.total_files - len(accepted),
        new_partitions=len(ingested.new_partitions),
        rows=sum(p.rows for p in version.partitions if p.partition_id in accepted),
        model_version=candidate.version,
        model_reused=candidate.reused,
        metric=decision.metric,
        metrics=candidate.metrics,
        promoted=decision.promoted,
        champion=decision.champion_after,
        reason=decision.reason,
        lake=lake,
        quarantined=quarantined,
        stage_seconds=stage_seconds,
        split_rows=candidate.rows,
    )


@contextmanager
def without_own_heartbeat() -> Iterator[None]:
    """Run the subflows started in the block without a heartbeat thread of their own.

    The pipeline's flow run keeps its heartbeat (what crash detection watches), and its
    stages run in its process. Each flow run's heartbeat thread is joined when the run
    ends, and it sleeps in one-second steps: that cost up to a second per stage.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


class StageClock:
    """Wall time of each stage of a run, as ``with clock("ingest"): ...`` measures it.

    The stage's subflow runs without a heartbeat of its own (``without_own_heartbeat``).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            with without_own_heartbeat():
                yield
        finally:
            self.seconds[stage] = round(time.monotonic() - started, 3)
