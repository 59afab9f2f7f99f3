"""Training stage: accepted partitions → xgboost.dask → a registered model version."""

from __future__ import annotations

from prefect import flow, get_run_logger

from blocks.registry import ModelRegistry
from tasks.artifacts import publish_training_summary
from tasks.cluster import stage_scheduler_address, stage_task_runner
from tasks.ingest import load_version
from tasks.lake import Lake
from tasks.models import ModelCandidate
from tasks.spec import load_spec
from tasks.train import candidate_from, load_report, plan_training_task, train_model_task


@flow(name="train", task_runner=stage_task_runner())
def train_flow(spec: str, lake: str, dataset_version: str | None = None) -> ModelCandidate:
    """Train on a validated dataset version (default: the latest) and register the model."""
    dataset = load_spec(spec)
    version = load_version(Lake(lake), dataset.name, dataset_version)
    report = load_report(Lake(lake), dataset, version)
    plan = plan_training_task(spec=dataset, version=version, report=report)
    registry = ModelRegistry(lake=lake)
    if registry.has_version(dataset.name, plan.model_version):
        # Same partitions, same training spec: the model exists; training again would only
        # reproduce it.
        get_run_logger().info(
            "Model %s@%s already registered for these inputs; reusing it",
            dataset.name,
            plan.model_version,
        )
        metadata = registry.metadata(dataset.name, plan.model_version)
        candidate = candidate_from(metadata, registry=registry, reused=True)
    else:
        # Runs here and drives the stage's cluster through its own client (see
        # stage_scheduler_address for why not inside a worker).
        candidate = train_model_task(
            scheduler=stage_scheduler_address(),
            spec=dataset,
            lake=lake,
            version=version,
            plan=plan,
        )
        get_run_logger().info(
            "Registered model %s@%s: test %s",
            dataset.name,
            candidate.version,
            ", ".join(f"{k}={v:.4f}" for k, v in candidate.metrics.items()),
        )
    publish_training_summary(candidate)
    return candidate
