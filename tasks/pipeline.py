"""What one pipeline run did, assembled from the four stages' results: the result, the stage
clock, and the run's metrics (a table artifact and a Prometheus file in the lake)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import task
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tasks.lake import Lake
from tasks.records import (
    IngestResult,
    ModelCandidate,
    PipelineResult,
    PromotionDecision,
    ValidationReport,
)
from tasks.retries import IO_RETRIES
from tasks.runtime.publish import artifact_key, publish_table


def pipeline_result(
    *,
    lake: str,
    ingested: IngestResult,
    report: ValidationReport,
    candidate: ModelCandidate,
    decision: PromotionDecision,
    stage_seconds: dict[str, float],
) -> PipelineResult:
    version = ingested.version
    accepted = set(report.accepted)
    quarantined = [q.reason for q in version.quarantined] + list(report.rejected_files.values())
    skipped = sum(
        stop - start for ranges in report.excluded_rows.values() for start, stop in ranges
    )
    return PipelineResult(
        dataset=version.dataset,
        dataset_version=version.version,
        files_total=report.total_files,
        files_accepted=report.accepted_files,
        files_quarantined=len(quarantined),
        files_read=ingested.files_read,
        partitions_total=len(version.partitions),
        partitions_accepted=len(accepted),
        new_partitions=len(ingested.new_partitions),
        rows=sum(p.rows for p in version.partitions if p.partition_id in accepted) - skipped,
        model_version=candidate.version,
        model_reused=candidate.reused,
        metric=decision.metric,
        metrics=candidate.metrics,
        promoted=decision.promoted,
        champion=decision.champion_after,
        reason=decision.reason,
        lake=lake,
        quarantined=quarantined,
        stage_seconds=stage_seconds,
        split_rows=candidate.rows,
    )


@contextmanager
def without_own_heartbeat() -> Iterator[None]:
    """Run the subflows started in the block without a heartbeat thread of their own.

    The pipeline's flow run keeps its heartbeat (what crash detection watches), and its
    stages run in its process. Each flow run's heartbeat thread is joined when the run
    ends, and it sleeps in one-second steps: that cost up to a second per stage.
    """

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


class StageClock:
    """Wall time of each stage of a run, as ``with clock("ingest"): ...`` measures it.

    The stage's subflow runs without a heartbeat of its own (``without_own_heartbeat``).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            with without_own_heartbeat():
                yield
        finally:
            self.seconds[stage] = round(time.monotonic() - started, 3)


def run_metrics(result: PipelineResult, *, finished_at: float) -> bytes:
    """The run in Prometheus' text format (for node_exporter's textfile collector or any
    scraper that reads files): stage durations, rows, partitions, model metrics, outcome."""

    registry = CollectorRegistry()
    labels = {"dataset": result.dataset}

    def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, ["dataset", *extra], registry=registry)

    seconds = gauge(
        "mlops_stage_duration_seconds", "Wall time of each stage in the last run.", ("stage",)
    )
    for stage, value in result.stage_seconds.items():
        seconds.labels(stage=stage, **labels).set(value)
    rows = gauge("mlops_rows", "Rows in the last run, by what they were used for.", ("kind",))
    rows.labels(kind="accepted", **labels).set(result.rows)
    for split, count in result.split_rows.items():
        rows.labels(kind=split, **labels).set(count)
    files = gauge("mlops_landing_files", "Landing files in the last run, by state.", ("state",))
    for state, count in {
        "total": result.files_total,
        "accepted": result.files_accepted,
        "quarantined": result.files_quarantined,
        "read": result.files_read,
    }.items():
        files.labels(state=state, **labels).set(count)
    partitions = gauge("mlops_partitions", "Partitions in the last run, by state.", ("state",))
    for state, count in {
        "total": result.partitions_total,
        "accepted": result.partitions_accepted,
        "new": result.new_partitions,
    }.items():
        partitions.labels(state=state, **labels).set(count)
    metric = gauge("mlops_model_metric", "Test metrics of the last run's model.", ("metric",))
    for name, value in result.metrics.items():
        metric.labels(metric=name, **labels).set(value)
    gauge("mlops_promoted", "1 if the last run promoted its model.").labels(**labels).set(
        int(result.promoted)
    )
    gauge("mlops_last_run_timestamp_seconds", "When the last run finished.").labels(**labels).set(
        finished_at
    )
    return bytes(generate_latest(registry))


def run_metrics_path(lake: Lake, dataset: str) -> str:
    return lake.path("runs", "metrics", f"{dataset}.prom")


def stage_table(result: PipelineResult) -> list[dict[str, Any]]:
    """Rows for the run-metrics table artifact: one per stage."""
    handled = {
        "ingest": f"{result.files_total} files ({result.files_read} read) in "
        f"{result.partitions_total} partitions, {result.new_partitions} new",
        "validate": f"{result.files_accepted} files accepted, "
        f"{result.files_quarantined} quarantined",
        "train": ", ".join(f"{k} {v:,}" for k, v in result.split_rows.items()),
        "promote": "promoted" if result.promoted else "kept the champion",
    }
    return [
        {"stage": stage, "seconds": seconds, "what": handled.get(stage, "")}
        for stage, seconds in result.stage_seconds.items()
    ]


def record_run_metrics(result: PipelineResult) -> str:
    """Stage durations and counts: a Prometheus file in the lake and a table artifact."""
    lake = Lake(result.lake)
    path = run_metrics_path(lake, result.dataset)
    lake.write_bytes(path, run_metrics(result, finished_at=time.time()))
    publish_table(
        key=artifact_key("run-metrics", result.dataset),
        table=stage_table(result),
        description=f"Stage durations of the run on {result.dataset} version "
        f"{result.dataset_version}; Prometheus metrics at {lake.url_of(path)}",
    )
    return lake.url_of(path)


@task(name="record-run-metrics", **IO_RETRIES)
def record_run_metrics_task(result: PipelineResult) -> str:
    """Stage durations and counts: a table artifact, and a Prometheus file in the lake."""
    return record_run_metrics(result)
