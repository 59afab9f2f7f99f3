"""What one pipeline run did, assembled from the four stages' results."""

from __future__ import annotations

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
    )
