"""Promotion: re-score the champion on the candidate's test split and move the alias if it wins.

The champion is judged on exactly the rows the candidate was tested on, with its own
features, categories and classes, so the comparison is fair even after the data changed.
Every decision is recorded, promoted or not; a failed run never touches the alias.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq
from prefect import task
from prefect.transactions import Transaction, get_transaction
from pydantic import BaseModel

from blocks.registry import ModelRegistry
from tasks.cluster import stage_client
from tasks.errors import RegistryError
from tasks.models import ModelMetadata, PromotionDecision
from tasks.retries import IO_RETRIES
from tasks.spec import DatasetSpec
from tasks.storage import open_file

if TYPE_CHECKING:
    from distributed import Client


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


def rescore_champion(
    client: Client,
    *,
    registry: ModelRegistry,
    champion: ModelMetadata,
    candidate: ModelMetadata,
    metric: str,
) -> float:
    """The champion's ``metric`` on the candidate's test split, computed on the client's cluster."""
    from tasks.train import load_prepared, score

    # Compatible models split rows the same way, so the champion's own layout selects the
    # candidate's test rows and encodes them as the champion was trained.
    layout = champion.layout
    booster = registry.load_booster(champion.model_name, champion.version)
    prepared = load_prepared(client, candidate.partitions, layout)
    metrics = score(client, booster, prepared, layout, "test")
    if metric not in metrics:
        raise RegistryError(f"metric '{metric}' is not computed for a {layout.task} model")
    return metrics[metric]


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
        "## Parameters",
        "",
        "```",
        *[f"{k}: {v}" for k, v in sorted(candidate.params.items())],
        "```",
    ]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6f}"


def feature_importance(registry: ModelRegistry, metadata: ModelMetadata) -> dict[str, float]:
    booster = registry.load_booster(metadata.model_name, metadata.version)
    scores = booster.get_score(importance_type="gain")
    # Multi-output models report a list per feature; their mean ranks the feature.
    return {k: float(v) if isinstance(v, float) else sum(v) / len(v) for k, v in scores.items()}


def move_alias(registry: ModelRegistry, decision: PromotionDecision) -> dict[str, Any]:
    """Move the champion alias when the decision promotes; return the aliases as they were."""
    before = registry.aliases(decision.model_name)
    if decision.promoted:
        registry.set_champion(decision.model_name, decision.candidate, reason=decision.reason)
    return before


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


# Serializing promotions ----------------------------------------------------------------------
def promotion_limit_name(model_name: str) -> str:
    return f"mlops-promote-{model_name}"


@contextmanager
def promotion_lock(model_name: str, *, timeout: float = 3600) -> Iterator[None]:
    """Hold the only slot of a Prefect global concurrency limit for this model's promotions.

    Two promotions of one model must not interleave: each reads the champion, decides
    against it and moves the alias, and the second must decide against what the first left.
    The limit lives in the Prefect API, so it serializes flow runs on any machine that
    shares it (and processes sharing an ephemeral API's database).
    """
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    name = promotion_limit_name(model_name)
    with get_client(sync_client=True) as client:
        # Idempotent; and a limit someone raised by hand would silently stop serializing.
        client.upsert_global_concurrency_limit_by_name(name, 1)
    with concurrency(name, occupy=1, timeout_seconds=timeout, strict=True):
        yield


# Tasks ---------------------------------------------------------------------------------------
@task(name="load-promotion-inputs", **IO_RETRIES)
def promotion_inputs_task(
    *, lake: str, spec: DatasetSpec, model_version: str | None
) -> PromotionInputs:
    """Read candidate and champion metadata from the registry."""
    return promotion_inputs(
        registry=ModelRegistry(lake=lake), spec=spec, model_version=model_version
    )


@task(name="build-model-card", **IO_RETRIES)
def model_card_task(*, lake: str, candidate: ModelMetadata, decision: PromotionDecision) -> str:
    """The candidate's model card (built before the alias moves, so it cannot fail after)."""
    importance = feature_importance(ModelRegistry(lake=lake), candidate)
    return model_card(candidate=candidate, decision=decision, importance=importance)


@task(name="rescore-champion", **{**IO_RETRIES, "retries": 1})
def rescore_champion_task(
    *, scheduler: str, lake: str, champion: ModelMetadata, candidate: ModelMetadata, metric: str
) -> float:
    """Score the champion on the candidate's test rows on the cluster at ``scheduler``."""
    with stage_client(scheduler) as client:
        return rescore_champion(
            client,
            registry=ModelRegistry(lake=lake),
            champion=champion,
            candidate=candidate,
            metric=metric,
        )


# Applying a decision is a Prefect transaction (see promote_flow): the alias moves, then the
# decision is recorded; if recording fails, the rollback hook puts the alias back, so a run
# that fails never leaves a changed champion behind.
@task(name="move-champion-alias", **IO_RETRIES)
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
    """Rollback hook of ``move-champion-alias``: write back the aliases it replaced."""
    registry = ModelRegistry(lake=txn.get("lake"))
    registry.restore_aliases(txn.get("model"), txn.get("aliases_before"))


@task(name="record-promotion-decision", **IO_RETRIES)
def record_decision_task(*, lake: str, decision: PromotionDecision) -> str:
    """Append the decision to the model's decision log (one new file, never rewritten)."""
    return ModelRegistry(lake=lake).record_decision(decision)
