"""Scoring stage: new landing files → predictions of the champion (or a named version) in
the lake, and their drift from the model's training data."""

from __future__ import annotations

from prefect import flow

from tasks.errors import SourceError
from tasks.ingest.tasks import list_landing_task
from tasks.lake import Lake
from tasks.records import ScoringResult
from tasks.runtime.caching import CacheOptions, map_cached
from tasks.runtime.lease import flow_uses_lake
from tasks.runtime.naming import dataset_run_name
from tasks.runtime.progress import StageProgress, run_logger
from tasks.runtime.runner import stage_task_runner
from tasks.score.manifest import scoring_result
from tasks.score.tasks import (
    SCORE_CACHE,
    add_to_training_task,
    drift_task,
    earlier_model_task,
    plan_scoring_task,
    publish_scoring_task,
    resolve_model_task,
    score_split_task,
    write_manifest_task,
)
from tasks.spec import load_spec_task


@flow(name="score", flow_run_name=dataset_run_name, task_runner=stage_task_runner("score"))
def score_flow(
    spec: str,
    source: str,
    lake: str,
    model: str = "champion",
    cluster: str = "local",
    cache: CacheOptions = CacheOptions(),  # noqa: B008 - immutable in use; Prefect's form default
    rescore: bool = False,
) -> ScoringResult:
    """Score every landing file under ``source`` with a registered model and measure drift.

    Args:
        spec: Dataset spec, a YAML path (relative to the working directory) or URI,
            e.g. datasets/demo.yaml.
        source: Folder or file with the .csv, .csv.gz or .parquet files to score: a path
            or s3:// URI. The target column may be absent.
        lake: Lake root where the models are and predictions go: a local path or
            s3://bucket/prefix.
        model: "champion", or a model version id to score with.
        cluster: Where the stage's Dask cluster runs: local, kubernetes, a scheduler address
            (tcp://host:8786) or the name of a saved MLOps Dask Cluster block.
        cache: Reuse of cached predictions: refresh to score again, expiry in days.
        rescore: Score with the champion files that an earlier champion scored already
            (by default its predictions stand).
    """
    dataset = load_spec_task(spec)
    with flow_uses_lake(lake):
        # No champion, an unknown version or a model of other columns fails before any data.
        chosen = resolve_model_task(lake=lake, spec=dataset, model=model)
        files = list_landing_task(source)
        splits = plan_scoring_task(spec=dataset, files=files)
        champion = chosen.version if chosen.champion else None
        if not rescore:
            chosen = earlier_model_task(
                lake=lake, spec=dataset, source=source, splits=splits, chosen=chosen
            )
        logger = run_logger(
            "score", dataset=dataset.name, model=dataset.name, model_version=chosen.version
        )
        scored = map_cached(
            score_split_task,
            SCORE_CACHE,
            lake=lake,
            options=cache,
            mapped="split",
            items=splits,
            shared={"spec": dataset, "lake": lake, "model": chosen},
            progress=StageProgress(
                stage="score", dataset=dataset.name, total=len(splits), unit="splits"
            ),
        )
        if not any(s.rows for s in scored.results):
            reasons = "\n  ".join(q.reason for s in scored.results for q in s.quarantined)
            raise SourceError(
                f"none of the {len(files)} file(s) under {source} could be scored:\n  {reasons}"
            )
        drift = drift_task(model=chosen, spec=dataset, scored=scored.results)
        manifest = write_manifest_task(
            lake=lake, spec=dataset, source=source, model=chosen, scored=scored.results, drift=drift
        )
        result = scoring_result(
            lake=Lake(lake),
            model=chosen,
            manifest=manifest,
            scored=scored.results,
            from_cache=scored.from_cache,
            spec=spec,
            champion=champion,
        )
        # Before the drift event: the retraining it starts must find the files already there.
        result = add_to_training_task(spec=dataset, result=result, scored=scored.results)
        if result.added_to_training:
            logger.info(
                "Added %d labeled file(s) to %s",
                len(result.added_to_training),
                result.training_source,
            )
        for reason in result.quarantined:
            logger.warning("Quarantined %s", reason)
        logger.info(
            "Scored %d rows of %d file(s) (%d new, %d cached, %d quarantined) with %s@%s; "
            "drift: %s%s",
            result.rows_scored,
            result.files_total,
            result.files_new,
            result.files_cached,
            result.files_quarantined,
            dataset.name,
            chosen.version,
            drift.status,
            f" ({', '.join(drift.drifted)})" if drift.drifted else "",
        )
        event = publish_scoring_task(result=result, model=chosen)
        if event is not None:
            logger.warning(
                "Drift alert: emitted %s for %s",
                "mlops.model.drift-detected",
                ", ".join(drift.drifted) or "the predictions",
            )
        return result
