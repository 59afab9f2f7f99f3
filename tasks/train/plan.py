"""What a training run trains on, and the content-addressed version its model gets.

A model version's id is the hash of its inputs (partitions, training spec, XGBoost version):
the same inputs give the same version, which is reused instead of retrained.
"""

from __future__ import annotations

import math
from importlib import metadata as importlib_metadata
from typing import Any

from pydantic import BaseModel, Field

from blocks.registry import ModelRegistry
from tasks.errors import ValidationFailed
from tasks.records import (
    DatasetVersion,
    FeatureLayout,
    ModelMetadata,
    ValidationReport,
    WarmStart,
)
from tasks.spec import DatasetSpec, stable_hash
from tasks.train.features import feature_layout


class TrainingPlan(BaseModel):
    model_version: str
    layout: FeatureLayout
    partition_uris: list[str]
    params: dict[str, Any]
    # Rows of rejected landing files to skip, by partition URI ([start, stop)).
    excluded: dict[str, list[tuple[int, int]]] = Field(default_factory=dict)
    # Set when the model continues the champion on the new partitions only.
    warm_start: WarmStart | None = None


def warm_start_plan(
    spec: DatasetSpec,
    *,
    layout: FeatureLayout,
    rows_by_uri: dict[str, int],
    champion: ModelMetadata | None,
    excluded: dict[str, list[tuple[int, int]]] | None = None,
) -> WarmStart | None:
    """How to continue ``champion`` on the partitions added since, or None to train from
    scratch: warm start is off, there is no comparable champion, partitions were removed
    (the champion learned from data no longer accepted), or too many rows were added since
    the last full training."""
    settings = spec.training.warm_start
    if settings is None or champion is None:
        return None
    if champion.training_hash != spec.training_hash() or champion.layout != layout:
        return None
    base = set(champion.partitions)
    new = sorted(set(rows_by_uri) - base)
    if not new or not base <= set(rows_by_uri):
        return None
    skipped = excluded or {}
    if any(list(champion.excluded_rows.get(u, [])) != list(skipped.get(u, [])) for u in base):
        return None  # the champion learned from rows now rejected, or lacks rows now accepted
    new_rows = sum(rows_by_uri[u] for u in new)
    chain = champion.warm_start
    full_rows = chain.full_rows if chain else sum(champion.rows.values())
    rows_since_full = (chain.rows_since_full if chain else 0) + new_rows
    if full_rows <= 0 or rows_since_full > settings.max_new_fraction * full_rows:
        return None
    share = new_rows / full_rows
    rounds = settings.rounds or max(10, math.ceil(spec.training.num_boost_round * share))
    return WarmStart(
        base_version=champion.version,
        base_rounds=champion.best_iteration + 1,
        rounds=rounds,
        new_partitions=new,
        new_rows=new_rows,
        full_version=chain.full_version if chain else champion.version,
        full_rows=full_rows,
        rows_since_full=rows_since_full,
    )


def plan_training(
    *,
    spec: DatasetSpec,
    version: DatasetVersion,
    report: ValidationReport,
    champion: ModelMetadata | None = None,
) -> TrainingPlan:
    """What to train on and the content-addressed id the model will get.

    With the spec's ``training.warm_start`` and a ``champion`` that the accepted partitions
    only add to, the plan continues the champion on the new partitions. A champion trained
    on exactly the accepted partitions is the model for them: its version is planned.
    """
    if not report.passed:
        raise ValidationFailed(
            f"dataset '{spec.name}' version {version.version} did not pass validation; "
            "refusing to train"
        )
    layout = feature_layout(spec, version, report.accepted, report.rejected_files)
    accepted = set(report.accepted)
    parts = [p for p in version.partitions if p.partition_id in accepted]
    skipped = {
        pid: [(int(a), int(b)) for a, b in ranges] for pid, ranges in report.excluded_rows.items()
    }
    excluded = {p.uri: skipped[p.partition_id] for p in parts if p.partition_id in skipped}
    rows_by_uri = {
        p.uri: p.rows - sum(stop - start for start, stop in excluded.get(p.uri, [])) for p in parts
    }
    uris = sorted(rows_by_uri)
    num_class = len(layout.classes) if layout.classes and spec.task == "multiclass" else None
    params = spec.xgboost_params(num_class=num_class)
    if (
        champion is not None
        and champion.warm_start is not None
        and set(champion.partitions) == set(uris)
        and champion.excluded_rows == excluded
        and champion.training_hash == spec.training_hash()
        and champion.layout == layout
    ):
        # Warm-started on exactly these partitions: it is the model for them (training
        # from scratch here would undo the warm start on every run with nothing new).
        return TrainingPlan(
            model_version=champion.version,
            layout=layout,
            partition_uris=uris,
            params=params,
            excluded=excluded,
        )
    warm = warm_start_plan(
        spec, layout=layout, rows_by_uri=rows_by_uri, champion=champion, excluded=excluded
    )
    model_version = stable_hash(
        {
            "partitions": sorted(accepted),
            "training": spec.training_hash(),
            "layout": layout.model_dump(mode="json"),
            # The installed version, without importing XGBoost (a warm run never trains).
            "xgboost": importlib_metadata.version("xgboost"),
            # A warm-started model is another model than one trained from scratch.
            **({"warm_start": warm.model_dump(mode="json")} if warm else {}),
            # Rows of rejected files skipped (absent when none: 0.1 versions stay valid).
            **({"excluded": skipped} if skipped else {}),
        }
    )
    return TrainingPlan(
        model_version=model_version,
        layout=layout,
        partition_uris=uris,
        params=params,
        excluded=excluded,
        warm_start=warm,
    )


def warm_start_candidate(lake: str, spec: DatasetSpec) -> ModelMetadata | None:
    """The champion's metadata when the spec allows warm starts (else None: not read)."""
    if spec.training.warm_start is None:
        return None
    registry = ModelRegistry(lake=lake)
    champion = registry.champion(spec.name)
    return registry.metadata(spec.name, champion) if champion else None


def planned_rounds(spec: DatasetSpec, plan: TrainingPlan) -> int:
    """Rounds this training boosts: the spec's, or a warm start's on top of its base."""
    return plan.warm_start.rounds if plan.warm_start else spec.training.num_boost_round
