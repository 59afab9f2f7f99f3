"""The model card: what a candidate is, how it was judged, and why."""

from __future__ import annotations

import posixpath

from blocks.registry import ModelRegistry
from tasks.records import ModelMetadata, PromotionDecision
from tasks.train.report import feature_importance


def model_card(
    *, candidate: ModelMetadata, decision: PromotionDecision, importance: dict[str, float]
) -> str:
    """A markdown model card for the candidate and the decision taken on it."""
    lines = [
        f"# Model card: {candidate.model_name} @ {candidate.version}",
        "",
        f"**Decision:** {'promoted to champion' if decision.promoted else 'not promoted'}: "
        f"{decision.reason}",
        "",
        f"- champion before: `{decision.champion_before or 'none'}`, after: "
        f"`{decision.champion_after or 'none'}`",
        f"- dataset `{candidate.dataset}` version `{candidate.dataset_version}` "
        f"({len(candidate.partitions)} partitions)",
        f"- rows: {', '.join(f'{k} {v:,}' for k, v in candidate.rows.items())}",
        f"- task `{candidate.layout.task}`, target `{candidate.layout.target}`, "
        f"best iteration {candidate.best_iteration} of {candidate.num_boost_round}",
        f"- xgboost {candidate.xgboost_version}, package {candidate.package_version}, "
        f"trained on {candidate.workers} worker(s)",
        "",
        "## Test metrics",
        "",
        "| metric | candidate |",
        "| --- | --- |",
        *[f"| {k} | {v:.6f} |" for k, v in sorted(candidate.metrics.items())],
        "",
        f"Compared on `{decision.metric}` ({decision.direction}): candidate "
        f"{_fmt(decision.candidate_value)}, champion {_fmt(decision.champion_value)}.",
        "",
        "## Feature importance (gain)",
        "",
        "| feature | gain |",
        "| --- | --- |",
        *[f"| {k} | {v:.3f} |" for k, v in sorted(importance.items(), key=lambda kv: -kv[1])],
        "",
        "## Lineage",
        "",
        f"- learned from dataset `{candidate.dataset}` version `{candidate.dataset_version}`: "
        f"{len(candidate.partitions)} partition(s) in `{_folder(candidate.partitions)}`",
        f"- spec hash `{candidate.spec_hash}`, training hash `{candidate.training_hash}`",
        *(
            [f"- warm-started from `{candidate.warm_start.base_version}`"]
            if candidate.warm_start
            else []
        ),
        *(
            [f"- resumed from the checkpoint at round {candidate.resumed_from_round}"]
            if candidate.resumed_from_round is not None
            else []
        ),
        f"- every landing file (URI, SHA-256) and the runs that scored with it: "
        f"`mlops lineage {candidate.model_name}@{candidate.version} --lake LAKE`",
        "",
        "## Parameters",
        "",
        "```",
        *[f"{k}: {v}" for k, v in sorted(candidate.params.items())],
        "```",
    ]
    return "\n".join(lines)


def _folder(uris: list[str]) -> str:
    return posixpath.dirname(uris[0]) if uris else "none"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6f}"


def build_model_card(*, lake: str, candidate: ModelMetadata, decision: PromotionDecision) -> str:
    """The candidate's model card, with its feature importance read from the registry."""
    importance = feature_importance(ModelRegistry(lake=lake), candidate)
    return model_card(candidate=candidate, decision=decision, importance=importance)
