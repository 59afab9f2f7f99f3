"""The promote stage's Prefect tasks: thin wrappers over the plain functions beside them."""

from __future__ import annotations

from prefect import task
from prefect.transactions import Transaction, get_transaction

from blocks.registry import ModelRegistry
from tasks.promote.card import build_model_card
from tasks.promote.decide import PromotionInputs, move_alias, promotion_inputs
from tasks.promote.publish import publish_model_card
from tasks.promote.rescore import rescore_champion
from tasks.records import ModelMetadata, PromotionDecision
from tasks.retries import IO_RETRIES
from tasks.spec import DatasetSpec


@task(name="promotion-inputs", **IO_RETRIES)
def promotion_inputs_task(
    *, lake: str, spec: DatasetSpec, model_version: str | None
) -> PromotionInputs:
    """Read candidate and champion metadata from the registry."""
    return promotion_inputs(
        registry=ModelRegistry(lake=lake), spec=spec, model_version=model_version
    )


@task(name="build-model-card", **IO_RETRIES)
def build_model_card_task(
    *, lake: str, candidate: ModelMetadata, decision: PromotionDecision
) -> str:
    """The candidate's model card (built before the alias moves, so it cannot fail after)."""
    return build_model_card(lake=lake, candidate=candidate, decision=decision)


@task(name="rescore-champion", **{**IO_RETRIES, "retries": 1})
def rescore_champion_task(
    *, scheduler: str, lake: str, champion: ModelMetadata, candidate: ModelMetadata, metric: str
) -> float:
    """Score the champion on the candidate's test rows on the cluster at ``scheduler``."""
    return rescore_champion(
        scheduler=scheduler,
        registry=ModelRegistry(lake=lake),
        champion=champion,
        candidate=candidate,
        metric=metric,
    )


# Applying a decision is a Prefect transaction (see promote_flow): the alias moves, then the
# decision is recorded; if recording fails, the rollback hook puts the alias back, so a run
# that fails never leaves a changed champion behind.
@task(name="move-alias", **IO_RETRIES)
def move_alias_task(*, lake: str, decision: PromotionDecision) -> None:
    """Move the champion alias when promoted (undone if the transaction rolls back)."""
    before = move_alias(ModelRegistry(lake=lake), decision)
    txn = get_transaction()  # this task run's own, a child of the flow's transaction
    if txn is not None:
        txn.set("lake", lake)
        txn.set("model", decision.model_name)
        txn.set("aliases_before", before)


@move_alias_task.on_rollback
def restore_alias(txn: Transaction) -> None:
    """Rollback hook of ``move-alias``: write back the aliases it replaced."""
    registry = ModelRegistry(lake=txn.get("lake"))
    registry.restore_aliases(txn.get("model"), txn.get("aliases_before"))


@task(name="record-decision", **IO_RETRIES)
def record_decision_task(*, lake: str, decision: PromotionDecision) -> str:
    """Append the decision to the model's decision log (one new file, never rewritten)."""
    return ModelRegistry(lake=lake).record_decision(decision)


@task(name="publish-model-card")
def publish_model_card_task(*, dataset: str, markdown: str, decision: PromotionDecision) -> None:
    """The model card as a markdown artifact of the run."""
    publish_model_card(dataset=dataset, markdown=markdown, decision=decision)
