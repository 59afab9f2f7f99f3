"""Training stage: accepted partitions → xgboost.dask → a registered model version."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.ingest.tasks import load_version_task
from tasks.lake import Lake
from tasks.records import DatasetVersion, ModelCandidate
from tasks.runtime.lease import flow_uses_lake, held
from tasks.runtime.naming import dataset_run_name
from tasks.runtime.progress import run_logger
from tasks.runtime.runner import stage_plan, stage_scheduler_address, stage_task_runner
from tasks.spec import DatasetSpec, load_spec_task
from tasks.train.plan import TrainingPlan
from tasks.train.register import training_key
from tasks.train.tasks import (
    find_registered_model_task,
    plan_training_task,
    publish_training_summary_task,
    train_model_task,
    write_training_report_task,
)
from tasks.validate.tasks import load_report_task


@flow(name="train", flow_run_name=dataset_run_name, task_runner=stage_task_runner("train"))
def train_flow(
    spec: str, lake: str, dataset_version: str | None = None, cluster: str = "local"
) -> ModelCandidate:
    """Train on a validated dataset version (default: the latest) and register the model.

    Training waits for all the workers its cluster was planned with (XGBoost is not elastic).

    Args:
        spec: Dataset spec, a YAML path (relative to the working directory) or URI,
            e.g. datasets/demo.yaml.
        lake: Lake root where partitions, reports and models live: a local path or
            s3://bucket/prefix.
        dataset_version: The validated dataset version to train on; empty for the latest.
        cluster: Where the stage's Dask cluster runs: local, kubernetes, a scheduler address
            (tcp://host:8786) or the name of a saved MLOps Dask Cluster block.
    """
    dataset = load_spec_task(spec)
    with flow_uses_lake(lake):
        version = load_version_task(lake=lake, spec=dataset, version=dataset_version)
        report = load_report_task(lake=lake, spec=dataset, version=version)
        plan = plan_training_task(spec=dataset, version=version, report=report, lake=lake)
        logger = run_logger(
            "train",
            dataset=dataset.name,
            dataset_version=version.version,
            model=dataset.name,
            model_version=plan.model_version,
        )
        candidate = find_registered_model_task(
            lake=lake, model_name=dataset.name, version=plan.model_version
        )
        if candidate is None:
            # Runs that overlap on these inputs train once: the others wait here (before
            # starting a cluster), then find the model registered.
            with held(
                Lake(lake),
                training_key(dataset.name, plan.model_version),
                what=f"training {dataset.name}@{plan.model_version}",
                on_wait=lambda holder: logger.info(
                    "Waiting for another run: %s holds the lease", holder.describe()
                ),
            ):
                candidate = find_registered_model_task(
                    lake=lake, model_name=dataset.name, version=plan.model_version
                )
                if candidate is None:
                    candidate = _train(
                        spec=dataset, lake=lake, version=version, plan=plan, logger=logger
                    )
        if candidate.reused:
            # Same partitions, same training spec: training again would only reproduce it.
            logger.info(
                "Model %s@%s already registered for these inputs; reusing it",
                dataset.name,
                plan.model_version,
            )
        publish_training_summary_task(lake=lake, candidate=candidate)
        write_training_report_task(lake=lake, candidate=candidate)
        return candidate


def _train(
    *, spec: DatasetSpec, lake: str, version: DatasetVersion, plan: TrainingPlan, logger: Any
) -> ModelCandidate:
    """Train on the stage's cluster (started here) and register the model."""
    if plan.warm_start is not None:
        warm = plan.warm_start
        logger.info(
            "Warm start: continuing champion %s@%s (%d trees) with up to %d rounds on "
            "%d new partition(s), %d rows",
            spec.name,
            warm.base_version,
            warm.base_rounds,
            warm.rounds,
            len(warm.new_partitions),
            warm.new_rows,
        )
    # Runs here and drives the stage's cluster through its own client (see
    # stage_scheduler_address for why not inside a worker).
    scheduler = stage_scheduler_address()
    cluster_plan = stage_plan()
    candidate = train_model_task(
        scheduler=scheduler,
        workers=cluster_plan.wait_for_workers,
        worker_timeout=cluster_plan.worker_timeout,
        spec=spec,
        lake=lake,
        version=version,
        plan=plan,
    )
    if not candidate.reused:
        logger.info(
            "Registered model %s@%s: test %s",
            spec.name,
            candidate.version,
            ", ".join(f"{k}={v:.4f}" for k, v in candidate.metrics.items()),
        )
    return candidate
