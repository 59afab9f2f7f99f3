"""Train on the stage's cluster and register the model as a new immutable version."""

from __future__ import annotations

import logging
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING

from distributed import Client

from blocks.registry import ModelRegistry
from tasks.errors import VersionExists
from tasks.lake import Lake
from tasks.records import DatasetVersion, ModelCandidate, ModelMetadata
from tasks.runtime.runner import stage_client
from tasks.spec import DatasetSpec
from tasks.train.checkpoint import Checkpoints
from tasks.train.distributed import train_distributed
from tasks.train.metrics import gain_importance
from tasks.train.plan import TrainingPlan, planned_rounds
from tasks.train.predictions import (
    Kept,
    decode_predictions,
    encode_predictions,
    reusable_predictions,
)
from tasks.train.progress import follow_training

logger = logging.getLogger(__name__)

# XGBoost takes seconds to import: only training, which needs it, imports it.
if TYPE_CHECKING:
    import xgboost


def candidate_from(
    metadata: ModelMetadata, *, registry: ModelRegistry, reused: bool
) -> ModelCandidate:
    return ModelCandidate(
        model_name=metadata.model_name,
        version=metadata.version,
        dataset_version=metadata.dataset_version,
        metric=metadata.metric,
        metrics=metadata.metrics,
        best_iteration=metadata.best_iteration,
        rows=metadata.rows,
        model_uri=registry.model_uri(metadata.model_name, metadata.version),
        created_at=metadata.created_at,
        reused=reused,
    )


def package_version() -> str:
    try:
        return importlib_metadata.version("mlops-pipelines")
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


def train_and_register(
    client: Client,
    *,
    spec: DatasetSpec,
    lake: Lake,
    version: DatasetVersion,
    plan: TrainingPlan,
) -> ModelCandidate:
    """Train on the cluster, then register model and metadata as a new immutable version."""
    import xgboost

    registry = ModelRegistry(lake=lake.uri)
    checkpoints = Checkpoints(lake.uri, spec.name, plan.model_version)
    warm = plan.warm_start
    base = registry.load_booster(spec.name, warm.base_version) if warm else None
    compare = champion_to_compare(registry, spec.name, plan)
    if warm and base is not None and compare is not None and compare[0] == warm.base_version:
        compare = (warm.base_version, base)  # the same model: predicted once
    known = champion_predictions(registry, spec.name, compare[0], plan) if compare else {}
    trained = train_distributed(
        client,
        uris=plan.partition_uris,
        layout=plan.layout,
        params=plan.params,
        num_boost_round=planned_rounds(spec, plan),
        early_stopping_rounds=spec.training.early_stopping_rounds,
        checkpoints=checkpoints,
        checkpoint_every=spec.training.checkpoint_every,
        report_progress=True,
        base=base,
        train_uris=warm.new_partitions if warm else None,
        excluded=plan.excluded,
        profile_bins=spec.monitoring.bins,
        version=plan.model_version,
        compare=compare,
        compare_predictions=known,
    )
    metadata = ModelMetadata(
        model_name=spec.name,
        version=plan.model_version,
        layout=plan.layout,
        params=plan.params,
        num_boost_round=(warm.base_rounds if warm else 0) + planned_rounds(spec, plan),
        early_stopping_rounds=spec.training.early_stopping_rounds,
        best_iteration=trained.best_iteration,
        best_score=trained.best_score,
        metric=spec.metric,
        direction=spec.direction,
        metrics=trained.metrics,
        rows=trained.rows,
        eval_history=trained.history,
        dataset=spec.name,
        dataset_version=version.version,
        partitions=plan.partition_uris,
        excluded_rows=plan.excluded,
        spec_hash=spec.spec_hash(),
        training_hash=spec.training_hash(),
        package_version=package_version(),
        xgboost_version=xgboost.__version__,
        workers=trained.workers,
        timings=trained.timings,
        resumed_from_round=trained.resumed_from_round,
        warm_start=warm.model_copy(update={"base_metrics": trained.base_metrics}) if warm else None,
        importance=gain_importance(trained.booster),
    )
    try:
        registry.register(
            metadata,
            bytes(trained.booster.save_raw(raw_format="ubj")),
            profile=trained.profile,
            evaluation=trained.evaluation,
            test_predictions=encode_predictions(trained.test_predictions),
        )
    except VersionExists:
        # An overlapping run registered these inputs first (it took the training lease
        # after this run's expired): the version is immutable and equivalent; use it.
        logger.warning(
            "Model %s@%s was registered meanwhile by another run; reusing it",
            spec.name,
            plan.model_version,
        )
        existing = registry.metadata(spec.name, plan.model_version)
        return candidate_from(existing, registry=registry, reused=True)
    # Registered: the version exists, so nothing will resume these any more.
    checkpoints.clear()
    return candidate_from(metadata, registry=registry, reused=False)


def training_key(model_name: str, version: str) -> str:
    """The lease overlapping runs of the same inputs share (one trains, the others reuse)."""
    return f"train/{model_name}/{version}"


def champion_to_compare(
    registry: ModelRegistry, name: str, plan: TrainingPlan
) -> tuple[str, xgboost.Booster] | None:
    """The champion, to draw beside the candidate on its test rows, when it encodes rows
    exactly as the candidate does (same features, categories, classes and split)."""
    champion = registry.champion(name)
    if champion is None or champion == plan.model_version:
        return None
    if registry.metadata(name, champion).layout != plan.layout:
        return None
    try:
        return champion, registry.load_booster(name, champion)
    except Exception as err:  # XGBoost raises its own error for a damaged model file
        # Drawing the champion is a nicety: a champion that cannot be loaded must not stop
        # a new model (promotion then reports it).
        logger.warning("Champion %s@%s not drawn beside the candidate: %s", name, champion, err)
        return None


def champion_predictions(
    registry: ModelRegistry, name: str, champion: str, plan: TrainingPlan
) -> dict[str, Kept]:
    """The champion's test rows of the plan's partitions as it saw them when it was
    trained (labels and predictions, by partition URI), where they still hold; {} for an
    older model."""
    try:
        stored = registry.test_predictions(name, champion)
        by_partition = decode_predictions(stored) if stored is not None else {}
    except Exception as err:  # a store error, or a damaged file (pyarrow raises several kinds)
        # Only a shortcut: the champion's test rows are predicted again.
        logger.warning("Champion %s@%s's kept predictions not used: %s", name, champion, err)
        return {}
    if not by_partition:
        return {}
    return reusable_predictions(
        by_partition,
        model=registry.metadata(name, champion),
        uris=plan.partition_uris,
        excluded=plan.excluded,
    )


def find_registered_model(*, lake: str, model_name: str, version: str) -> ModelCandidate | None:
    """The registered model for these inputs, if training them already happened."""
    registry = ModelRegistry(lake=lake)
    if not registry.has_version(model_name, version):
        return None
    return candidate_from(registry.metadata(model_name, version), registry=registry, reused=True)


def train_model(
    *,
    scheduler: str,
    workers: int,
    spec: DatasetSpec,
    lake: str,
    version: DatasetVersion,
    plan: TrainingPlan,
    worker_timeout: float,
) -> ModelCandidate:
    """Train with xgboost.dask on the cluster at ``scheduler`` and register the model."""
    with stage_client(scheduler) as client:
        # XGBoost trains on the workers present when it starts; a replaced worker must be
        # back first, or the retry would train on fewer (and lose their share of the data).
        client.wait_for_workers(workers, timeout=worker_timeout)
        with follow_training(client, spec, total=planned_rounds(spec, plan)):
            return train_and_register(
                client, spec=spec, lake=Lake(lake), version=version, plan=plan
            )
