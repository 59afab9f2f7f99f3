"""The score stage's Prefect tasks: thin wrappers over the plain functions beside them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task

from tasks.ingest.plan import pack
from tasks.lake import Lake
from tasks.records import (
    DriftReport,
    LandingFile,
    ScoredSplit,
    ScoringManifest,
    ScoringModel,
    ScoringResult,
    Split,
)
from tasks.retries import IO_RETRIES
from tasks.runtime.caching import ContentKey
from tasks.score.drift import run_drift
from tasks.score.feedback import add_to_training
from tasks.score.manifest import write_manifest
from tasks.score.model import earlier_model, resolve_model
from tasks.score.publish import (
    emit_drift_event,
    publish_drift_report_link,
    publish_drift_table,
    record_scoring_metrics,
)
from tasks.score.report import write_drift_report
from tasks.score.split import output_id, score_split
from tasks.spec import DatasetSpec


@task(name="resolve-scoring-model", **IO_RETRIES)
def resolve_model_task(*, lake: str, spec: DatasetSpec, model: str) -> ScoringModel:
    """The champion or the named version, checked against the spec (before any data)."""
    return resolve_model(Lake(lake), spec, model)


@task(name="keep-earlier-model", **IO_RETRIES)
def earlier_model_task(
    *, lake: str, spec: DatasetSpec, source: str, splits: list[Split], chosen: ScoringModel
) -> ScoringModel:
    """An earlier champion whose predictions of every split stand, else ``chosen``."""
    return earlier_model(Lake(lake), spec, source, splits, chosen)


@task(name="plan-scoring")
def plan_scoring_task(*, spec: DatasetSpec, files: list[LandingFile]) -> list[Split]:
    """The scoring files in splits of about one partition, as ingestion plans them."""
    return pack(files, spec)


def scoring_identity(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What a ``score-split`` result depends on: its prediction file's content address (the
    split's files and content tags, the model version, explanations, the checks) and the
    lake it is in."""
    return {
        "output": output_id(inputs["split"], inputs["model"], inputs["spec"]),
        "lake": inputs["lake"],
    }


SCORE_CACHE = ContentKey(identity=scoring_identity)


@task(name="score-split", **IO_RETRIES)
def score_split_task(
    *, split: Split, spec: DatasetSpec, lake: str, model: ScoringModel
) -> ScoredSplit:
    """Score one split of landing files on a Dask worker."""
    return score_split(split=split, spec=spec, lake=Lake(lake), model=model)


@task(name="measure-drift")
def drift_task(*, model: ScoringModel, spec: DatasetSpec, scored: list[ScoredSplit]) -> DriftReport:
    """The scored rows against the model's training profile (compact profiles, no rows)."""
    return run_drift(model, spec, scored)


@task(name="write-scoring-manifest", **IO_RETRIES)
def write_manifest_task(
    *,
    lake: str,
    spec: DatasetSpec,
    source: str,
    model: ScoringModel,
    scored: list[ScoredSplit],
    drift: DriftReport,
) -> ScoringManifest:
    """The run's manifest, written after every prediction file it names."""
    return write_manifest(
        lake=Lake(lake), dataset=spec.name, source=source, model=model, scored=scored, drift=drift
    )


@task(name="add-scored-to-training", **IO_RETRIES)
def add_to_training_task(
    *, spec: DatasetSpec, result: ScoringResult, scored: list[ScoredSplit]
) -> ScoringResult:
    """Labeled files of a drifted batch into the champion's landing folder, when the spec's
    monitoring.retrain_with_scored asks for it; the result, naming the files written."""
    added = add_to_training(spec, result, scored)
    return result.model_copy(update={"added_to_training": added}) if added else result


@task(name="publish-scoring", **IO_RETRIES)
def publish_scoring_task(*, result: ScoringResult, model: ScoringModel) -> str | None:
    """Drift table and report, scoring metrics, and the drift event when it alerts; the
    event's id."""
    publish_drift_table(result)
    record_scoring_metrics(result)
    if model.profile is not None:
        publish_drift_report_link(result, write_drift_report(result, model))
    return emit_drift_event(result)
