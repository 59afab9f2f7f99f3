"""What a scoring run shows and tells: the drift table, the scoring metrics for Prometheus,
the drift report page, and the ``mlops.model.drift-detected`` event."""

from __future__ import annotations

import logging
import time
from typing import Any

from prefect.events import emit_event
from prefect.runtime import flow_run
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tasks.lake import Lake
from tasks.records import DriftReport, FeatureDrift, ScoringResult
from tasks.runtime.publish import artifact_key, publish_link, publish_table

DRIFT_EVENT = "mlops.model.drift-detected"

logger = logging.getLogger(__name__)


def drift_rows(drift: DriftReport) -> list[dict[str, Any]]:
    """One table row per feature (and the prediction), worst first."""
    rows = [*drift.features, *([drift.prediction] if drift.prediction else [])]
    order = {"alert": 0, "warn": 1, "ok": 2}
    return [
        {
            "feature": f.feature,
            "verdict": f.verdict,
            "psi": round(f.psi, 4),
            "js_distance": round(f.js_distance, 4),
            "null_rate_train": round(f.null_fraction_train, 4),
            "null_rate_scored": round(f.null_fraction_scored, 4),
            "unseen_share": round(f.unseen_share, 4),
            "unseen": ", ".join(f.unseen),
        }
        for f in sorted(rows, key=lambda f: (order[f.verdict], -f.psi))
    ]


def publish_drift_table(result: ScoringResult) -> None:
    drift = result.drift
    realized = (
        f"; realized {drift.metric} {drift.realized:.4f} (test {drift.expected:.4f})"
        if drift.realized is not None and drift.expected is not None
        else ""
    )
    publish_table(
        key=artifact_key("drift", result.dataset),
        table=drift_rows(drift),
        description=f"Drift of {result.rows_scored:,} scored rows from the training rows of "
        f"{result.dataset}@{result.model_version}: {drift.status}{realized}",
    )


def scoring_metrics(result: ScoringResult, *, finished_at: float) -> bytes:
    """The scoring run in Prometheus' text format (``runs/metrics/<dataset>-scoring.prom``)."""
    registry = CollectorRegistry()
    labels = {"dataset": result.dataset}

    def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, ["dataset", *extra], registry=registry)

    gauge("mlops_rows_scored", "Rows scored by the last scoring run.").labels(**labels).set(
        result.rows_scored
    )
    files = gauge("mlops_scoring_files", "Files of the last scoring run, by state.", ("state",))
    for state, count in {
        "total": result.files_total,
        "new": result.files_new,
        "cached": result.files_cached,
        "quarantined": result.files_quarantined,
    }.items():
        files.labels(state=state, **labels).set(count)
    psi = gauge("mlops_feature_psi", "PSI of each feature, scored vs training rows.", ("feature",))
    for feature in result.drift.features:
        psi.labels(feature=feature.feature, **labels).set(feature.psi)
    if result.drift.prediction is not None:
        gauge("mlops_prediction_psi", "PSI of the predictions, scored vs test rows.").labels(
            **labels
        ).set(result.drift.prediction.psi)
    level = {"ok": 0, "warn": 1, "alert": 2}.get(result.drift.status, -1)
    gauge(
        "mlops_drift_level",
        "Drift verdict of the last scoring run: 0 ok, 1 warn, 2 alert, -1 not judged.",
    ).labels(**labels).set(level)
    if result.drift.realized is not None and result.drift.metric is not None:
        gauge(
            "mlops_realized_metric", "The model's metric on scored rows with labels.", ("metric",)
        ).labels(metric=result.drift.metric, **labels).set(result.drift.realized)
    gauge("mlops_last_scoring_timestamp_seconds", "When the last scoring run finished.").labels(
        **labels
    ).set(finished_at)
    return bytes(generate_latest(registry))


def record_scoring_metrics(result: ScoringResult) -> str:
    lake = Lake(result.lake)
    path = lake.path("runs", "metrics", f"{result.dataset}-scoring.prom")
    lake.write_bytes(path, scoring_metrics(result, finished_at=time.time()))
    return lake.url_of(path)


def drift_payload(result: ScoringResult) -> dict[str, Any]:
    drift = result.drift

    def values(f: FeatureDrift) -> dict[str, Any]:
        return {
            "psi": round(f.psi, 6),
            "unseen_share": round(f.unseen_share, 6),
            "unseen": f.unseen,
        }

    return {
        "dataset": result.dataset,
        "model_version": result.model_version,
        "status": drift.status,
        "drifted": drift.drifted,
        "features": {f.feature: values(f) for f in drift.features if f.verdict == "alert"},
        "prediction_psi": drift.prediction.psi if drift.prediction else None,
        "realized": {"metric": drift.metric, "value": drift.realized, "test": drift.expected}
        if drift.realized is not None
        else None,
        "rows": result.rows_scored,
        "manifest": result.manifest_uri,
        # What the retraining trigger in prefect.yaml starts ml-pipeline with.
        "spec": result.spec,
        "lake": result.lake,
        "source": result.source,
        "training_source": result.training_source,
        "added_to_training": result.added_to_training,
    }


def emit_drift_event(result: ScoringResult) -> str | None:
    """``mlops.model.drift-detected`` on ``mlops.model.<name>`` when drift is at the alert
    level (the retraining trigger and the drift automation react to it); the event's id,
    or None."""
    if result.drift.status != "alert":
        return None
    related = []
    run_id = flow_run.get_id()
    if run_id:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{run_id}",
                "prefect.resource.role": "flow-run",
            }
        )
    try:
        event = emit_event(
            event=DRIFT_EVENT,
            resource={
                "prefect.resource.id": f"mlops.model.{result.dataset}",
                "prefect.resource.name": result.dataset,
                "mlops.model.version": result.model_version,
            },
            related=related,
            payload=drift_payload(result),
        )
    except Exception as err:  # an unreachable API must not fail a run whose work is done
        logger.warning("Could not emit %s: %s", DRIFT_EVENT, err)
        return None
    return str(event.id) if event is not None else None


def publish_drift_report_link(result: ScoringResult, uri: str) -> None:
    publish_link(
        key=artifact_key("drift-report", result.dataset),
        link=uri,
        description=f"Scored vs training distributions of {result.dataset}@{result.model_version}",
    )
