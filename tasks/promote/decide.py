"""The promotion decision: the champion is judged on exactly the rows the candidate was tested
on, with its own features, categories and classes, so the comparison is fair even after the
data changed. Every decision is recorded, promoted or not.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow.parquet as pq
from pydantic import BaseModel

from blocks.registry import ModelRegistry
from tasks.errors import RegistryError
from tasks.records import ModelMetadata, PromotionDecision
from tasks.spec import DatasetSpec
from tasks.storage import open_file


def incompatibility(champion: ModelMetadata, candidate: ModelMetadata) -> str | None:
    """Why the champion cannot be scored on the candidate's data, or None when it can."""
    a, b = champion.layout, candidate.layout
    if (a.task, a.target) != (b.task, b.target):
        return f"champion predicts {a.target} ({a.task}), candidate predicts {b.target} ({b.task})"
    if (a.split, a.key) != (b.split, b.key):
        return (
            f"champion split rows by {a.key or 'whole row'} with {a.split}, candidate by "
            f"{b.key or 'whole row'} with {b.split}; the candidate's test rows may include "
            "the champion's training rows"
        )
    if a.classes != b.classes:
        return f"champion classes {a.classes} differ from candidate classes {b.classes}"
    if not candidate.partitions:
        return "candidate has no partitions to score on"
    with open_file(candidate.partitions[0], "rb") as fh:
        columns = set(pq.read_schema(fh).names)
    missing = [f for f in a.features if f not in columns]
    if missing:
        return f"candidate data lacks champion feature(s) {', '.join(missing)}"
    return None


def decide(
    *,
    candidate_value: float,
    champion_value: float | None,
    direction: str,
    min_improvement: float,
) -> tuple[bool, str]:
    """Promote when there is no champion, or the candidate beats it by ``min_improvement``."""
    if not math.isfinite(candidate_value):
        return False, f"candidate metric is {candidate_value}; refusing to promote"
    if champion_value is None:
        return True, "no champion yet"
    if not math.isfinite(champion_value):
        return False, f"champion re-scored as {champion_value}; promote by hand if intended"
    gain = (
        candidate_value - champion_value
        if direction == "maximize"
        else champion_value - candidate_value
    )
    if gain <= 0:
        return False, f"candidate is not better than the champion ({gain:+.6f})"
    if gain < min_improvement:
        return False, f"candidate better by {gain:.6f}, below the required {min_improvement}"
    return True, f"candidate better by {gain:.6f} (required: {min_improvement})"


def make_decision(
    *,
    spec: DatasetSpec,
    candidate: ModelMetadata,
    champion: str | None,
    champion_value: float | None,
    incompatible: str | None = None,
) -> PromotionDecision:
    metric, direction = spec.metric, spec.direction
    if metric not in candidate.metrics:
        raise RegistryError(
            f"promotion.metric: model {spec.name}@{candidate.version} has no '{metric}' "
            f"(it reports {', '.join(sorted(candidate.metrics))})"
        )
    candidate_value = candidate.metrics[metric]
    if champion == candidate.version:
        promoted, reason = False, "candidate is already the champion (same data and spec)"
    elif incompatible is not None:
        promoted, reason = (
            False,
            f"champion {champion} cannot be compared ({incompatible}); promote by hand with "
            f"`mlops registry promote {spec.name} {candidate.version}`",
        )
    else:
        promoted, reason = decide(
            candidate_value=candidate_value,
            champion_value=champion_value,
            direction=direction,
            min_improvement=spec.promotion.min_improvement,
        )
    return PromotionDecision(
        model_name=spec.name,
        candidate=candidate.version,
        champion_before=champion,
        champion_after=candidate.version if promoted else champion,
        metric=metric,
        direction=direction,
        candidate_value=candidate_value,
        champion_value=champion_value,
        min_improvement=spec.promotion.min_improvement,
        promoted=promoted,
        reason=reason,
    )


class PromotionInputs(BaseModel):
    candidate: ModelMetadata
    champion: ModelMetadata | None
    incompatible: str | None
    # The champion's score on the candidate's test rows, when already known.
    champion_value: float | None = None

    @property
    def needs_rescore(self) -> bool:
        """A different, comparable champion exists whose score on the candidate's test rows
        is not known yet: score it."""
        return (
            self.champion is not None
            and self.champion.version != self.candidate.version
            and self.incompatible is None
            and self.champion_value is None
        )


def known_champion_value(
    registry: ModelRegistry, *, candidate: ModelMetadata, champion: ModelMetadata, metric: str
) -> float | None:
    """The champion's score on the candidate's test rows if it was measured before: by the
    warm start that continued the champion, or by an earlier decision on the same pair."""
    warm = candidate.warm_start
    if warm is not None and warm.base_version == champion.version and metric in warm.base_metrics:
        return warm.base_metrics[metric]
    for decision in reversed(registry.decisions(candidate.model_name)):
        if (
            decision.candidate == candidate.version
            and decision.champion_before == champion.version
            and decision.metric == metric
            and decision.champion_value is not None
        ):
            return decision.champion_value
    return None


def promotion_inputs(
    *, registry: ModelRegistry, spec: DatasetSpec, model_version: str | None
) -> PromotionInputs:
    """The candidate (default: newest version), the champion, and whether they compare."""
    if model_version is None:
        versions = registry.versions(spec.name)
        if not versions:
            raise RegistryError(
                f"model '{spec.name}' has no registered versions in {registry.lake}"
            )
        model_version = versions[-1].version
    candidate = registry.metadata(spec.name, model_version)
    champion_version = registry.champion(spec.name)
    champion = registry.metadata(spec.name, champion_version) if champion_version else None
    incompatible = (
        incompatibility(champion, candidate)
        if champion is not None and champion.version != candidate.version
        else None
    )
    known = (
        known_champion_value(registry, candidate=candidate, champion=champion, metric=spec.metric)
        if champion is not None and champion.version != candidate.version and not incompatible
        else None
    )
    return PromotionInputs(
        candidate=candidate, champion=champion, incompatible=incompatible, champion_value=known
    )


def move_alias(registry: ModelRegistry, decision: PromotionDecision) -> dict[str, Any]:
    """Move the champion alias when the decision promotes; return the aliases as they were."""
    before = registry.aliases(decision.model_name)
    if decision.promoted:
        registry.set_champion(decision.model_name, decision.candidate, reason=decision.reason)
    return before
