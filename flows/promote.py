"""Promotion stage: compare a candidate with the champion and move the alias if it wins."""

from __future__ import annotations

from prefect import flow, get_run_logger

from blocks.registry import ModelRegistry
from tasks.artifacts import publish_model_card
from tasks.cluster import stage_scheduler_address, stage_task_runner
from tasks.errors import RegistryError
from tasks.models import PromotionDecision
from tasks.promote import (
    apply_decision_task,
    feature_importance,
    incompatibility,
    make_decision,
    model_card,
    rescore_champion_task,
)
from tasks.spec import load_spec


@flow(name="promote", task_runner=stage_task_runner(partitions=1))
def promote_flow(spec: str, lake: str, model_version: str | None = None) -> PromotionDecision:
    """Decide on ``model_version`` (default: the newest registered version) by the spec's policy."""
    dataset = load_spec(spec)
    registry = ModelRegistry(lake=lake)
    if model_version is None:
        versions = registry.versions(dataset.name)
        if not versions:
            raise RegistryError(f"model '{dataset.name}' has no registered versions in {lake}")
        model_version = versions[-1].version
    candidate = registry.metadata(dataset.name, model_version)
    champion = registry.champion(dataset.name)
    champion_value, incompatible = None, None
    if champion is not None and champion != candidate.version:
        champion_meta = registry.metadata(dataset.name, champion)
        incompatible = incompatibility(champion_meta, candidate)
        if incompatible is None:
            champion_value = rescore_champion_task(
                scheduler=stage_scheduler_address(),
                lake=lake,
                champion=champion_meta,
                candidate=candidate,
                metric=dataset.metric,
            )
    decision = make_decision(
        spec=dataset,
        candidate=candidate,
        champion=champion,
        champion_value=champion_value,
        incompatible=incompatible,
    )
    apply_decision_task(lake=lake, decision=decision)
    get_run_logger().info(
        "Model %s@%s %s: %s (champion now %s)",
        dataset.name,
        candidate.version,
        "promoted" if decision.promoted else "not promoted",
        decision.reason,
        decision.champion_after,
    )
    publish_model_card(
        dataset=dataset.name,
        markdown=model_card(
            candidate=candidate,
            decision=decision,
            importance=feature_importance(registry, candidate),
        ),
        decision=decision,
    )
    return decision
