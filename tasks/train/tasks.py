"""The train stage's Prefect tasks: thin wrappers over the plain functions beside them."""

from __future__ import annotations

from prefect import task

from tasks.records import DatasetVersion, ModelCandidate, ValidationReport
from tasks.retries import IO_RETRIES, TRAINING_RETRIES
from tasks.spec import DatasetSpec
from tasks.train.plan import TrainingPlan, plan_training, warm_start_candidate
from tasks.train.publish import publish_training_report_link, publish_training_summary
from tasks.train.register import find_registered_model, train_model
from tasks.train.report import write_training_report


@task(name="find-registered-model", **IO_RETRIES)
def find_registered_model_task(
    *, lake: str, model_name: str, version: str
) -> ModelCandidate | None:
    """The registered model for these inputs, if training them already happened."""
    return find_registered_model(lake=lake, model_name=model_name, version=version)


@task(name="plan-training")
def plan_training_task(
    *, spec: DatasetSpec, version: DatasetVersion, report: ValidationReport, lake: str
) -> TrainingPlan:
    """Check the data can train a model and compute the model version id (a warm start of
    the champion when the spec allows it)."""
    return plan_training(
        spec=spec, version=version, report=report, champion=warm_start_candidate(lake, spec)
    )


# A lost worker fails XGBoost's collective at once; the retry waits for the cluster to be
# back to size and resumes from the last checkpoint. The task is the plain function itself.
train_model_task = task(name="train-model", **TRAINING_RETRIES)(train_model)


@task(name="publish-training-summary")
def publish_training_summary_task(*, lake: str, candidate: ModelCandidate) -> None:
    """Rounds, best iteration, eval history, timings and workers of the candidate."""
    publish_training_summary(lake=lake, candidate=candidate)


@task(name="write-training-report", **IO_RETRIES)
def write_training_report_task(*, lake: str, candidate: ModelCandidate) -> str:
    """Write the training report into the lake, link it from the run; its URI."""
    uri = write_training_report(lake=lake, candidate=candidate)
    publish_training_report_link(candidate=candidate, uri=uri)
    return uri
