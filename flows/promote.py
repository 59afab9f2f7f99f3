"""Promotion stage: compare a candidate with the champion and move the alias if it wins."""

from __future__ import annotations

from prefect import flow
from prefect.transactions import transaction

from tasks.promote.decide import make_decision
from tasks.promote.lock import promotion_lock
from tasks.promote.tasks import (
    build_model_card_task,
    move_alias_task,
    promotion_inputs_task,
    publish_model_card_task,
    record_decision_task,
    rescore_champion_task,
)
from tasks.records import PromotionDecision
from tasks.runtime.lease import flow_uses_lake
from tasks.runtime.naming import dataset_run_name
from tasks.runtime.progress import run_logger
from tasks.runtime.runner import stage_scheduler_address, stage_task_runner
from tasks.spec import load_spec_task


@flow(name="promote", flow_run_name=dataset_run_name, task_runner=stage_task_runner("promote"))
def promote_flow(
    spec: str, lake: str, model_version: str | None = None, cluster: str = "local"
) -> PromotionDecision:
    """Decide on ``model_version`` (default: the newest registered version) by the spec's policy.

    Args:
        spec: Dataset spec, a YAML path (relative to the working directory) or URI,
            e.g. datasets/demo.yaml.
        lake: Lake root where partitions, reports and models live: a local path or
            s3://bucket/prefix.
        model_version: The registered model version to decide on; empty for the newest.
        cluster: Where the stage's Dask cluster runs: local, kubernetes, a scheduler address
            (tcp://host:8786) or the name of a saved MLOps Dask Cluster block.
    """
    dataset = load_spec_task(spec)
    with flow_uses_lake(lake):
        # Read the champion, decide and move the alias as one step per model: a concurrent
        # promotion decides against what this one leaves (see promotion_lock).
        with promotion_lock(dataset.name):
            inputs = promotion_inputs_task(lake=lake, spec=dataset, model_version=model_version)
            candidate, champion = inputs.candidate, inputs.champion
            champion_value = inputs.champion_value
            if inputs.needs_rescore and champion is not None:
                champion_value = rescore_champion_task(
                    scheduler=stage_scheduler_address(),
                    lake=lake,
                    champion=champion,
                    candidate=candidate,
                    metric=dataset.metric,
                )
            decision = make_decision(
                spec=dataset,
                candidate=candidate,
                champion=champion.version if champion else None,
                champion_value=champion_value,
                incompatible=inputs.incompatible,
            )
            card = build_model_card_task(lake=lake, candidate=candidate, decision=decision)
            # All or nothing: if the decision cannot be recorded, the alias is moved back.
            with transaction():
                move_alias_task(lake=lake, decision=decision)
                record_decision_task(lake=lake, decision=decision)
        run_logger(
            "promote", dataset=dataset.name, model=dataset.name, model_version=candidate.version
        ).info(
            "Model %s@%s %s: %s (champion now %s)",
            dataset.name,
            candidate.version,
            "promoted" if decision.promoted else "not promoted",
            decision.reason,
            decision.champion_after,
        )
        publish_model_card_task(dataset=dataset.name, markdown=card, decision=decision)
        return decision
