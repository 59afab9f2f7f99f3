"""What a running stage shows about itself: progress, its Dask dashboard and performance report.

- :class:`StageProgress` is a Prefect progress artifact (per partition, per N training
  rounds) that also tells in-process listeners, such as ``mlops run``'s progress display.
- The stage's task runner (``tasks/cluster.py``) enters :func:`stage_diagnostics` once its
  cluster is up, so every stage that used a cluster leaves a Dask performance report in the
  lake, linked from its flow run, whether it succeeded or failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefect import task

from tasks.artifacts import artifact_key, publish_link, publish_table
from tasks.lake import Lake
from tasks.models import PipelineResult
from tasks.retries import IO_RETRIES

if TYPE_CHECKING:
    from distributed import Client

# Collecting the report is one scheduler call; a scheduler that does not answer in this
# long is gone, and the stage's own outcome matters more than its report.
REPORT_TIMEOUT_S = 60


# Structured logs -------------------------------------------------------------------------------
def run_logger(stage: str, **ids: str | None) -> Any:
    """The run's Prefect logger, with ``stage`` and the ids given (dataset, dataset_version,
    partition, model, model_version) on every record it writes.

    The ids travel as record attributes, so JSON logging
    (``PREFECT_LOGGING_HANDLERS_CONSOLE_FORMATTER=json``) or any handler can index them;
    messages name them too, for the Prefect UI, which shows the message only.
    """
    from prefect import get_run_logger

    extra: dict[str, Any] = {k: v for k, v in ids.items() if v is not None}
    return get_run_logger(None, stage=stage, **extra)


# Progress ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProgressUpdate:
    stage: str
    done: int
    total: int
    unit: str
    detail: str = ""

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0


ProgressListener = Callable[[ProgressUpdate], None]
_listeners: list[ProgressListener] = []
_listeners_lock = threading.Lock()


@contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[None]:
    """Call ``listener`` with every progress update made in this process while inside."""
    with _listeners_lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(listener)


class StageProgress:
    """A progress artifact for one stage of one run, updated as work completes.

    Thread-safe, and safe to update from an event loop (Dask's topic handlers): it talks to
    the API with Prefect's synchronous client and at most once per ``interval`` seconds,
    except for the final update. A failing API never fails the work it reports on.
    """

    def __init__(
        self, *, stage: str, dataset: str, total: int, unit: str, interval: float = 1.0
    ) -> None:
        from prefect.utilities.context import get_task_and_flow_run_ids

        self.stage, self.total, self.unit, self.interval = stage, total, unit, interval
        self.key = artifact_key(f"{stage}-progress", dataset)
        self._lock = threading.Lock()
        self._sent_at = 0.0
        self._artifact: Any = None
        task_run_id, flow_run_id = get_task_and_flow_run_ids()
        self._runs = {"task_run_id": task_run_id, "flow_run_id": flow_run_id}
        self._api(self._create)
        # Creating it was the first send: the interval counts from now.
        self._sent_at = time.monotonic()

    def update(self, done: int, detail: str = "") -> None:
        update = ProgressUpdate(self.stage, min(done, self.total), self.total, self.unit, detail)
        with _listeners_lock:
            listeners = list(_listeners)
        for listener in listeners:
            listener(update)
        with self._lock:
            now = time.monotonic()
            if update.done < self.total and now - self._sent_at < self.interval:
                return
            self._sent_at = now
        self._api(lambda client: self._send(client, update))

    def _create(self, client: Any) -> None:
        from prefect.client.schemas.actions import ArtifactCreate

        self._artifact = client.create_artifact(
            ArtifactCreate(
                type="progress",
                key=self.key,
                data=0.0,
                description=f"{self.stage}: 0 of {self.total} {self.unit}",
                **self._runs,
            )
        ).id

    def _send(self, client: Any, update: ProgressUpdate) -> None:
        from prefect.client.schemas.actions import ArtifactUpdate

        if self._artifact is None:
            return
        client.update_artifact(
            self._artifact,
            ArtifactUpdate(
                data=update.percent,
                description=f"{self.stage}: {update.done} of {self.total} {self.unit}"
                + (f" ({update.detail})" if update.detail else ""),
            ),
        )

    def _api(self, call: Callable[[Any], None]) -> None:
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                call(client)
        except Exception as err:  # progress is a view of the work, never a reason to stop it
            logging.getLogger(__name__).warning("Progress of %s not updated: %s", self.key, err)


# Run metrics ---------------------------------------------------------------------------------
def run_metrics(result: PipelineResult, *, finished_at: float) -> bytes:
    """The run in Prometheus' text format (for node_exporter's textfile collector or any
    scraper that reads files): stage durations, rows, partitions, model metrics, outcome."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

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
    partitions = gauge("mlops_partitions", "Landing files in the last run, by state.", ("state",))
    for state, count in {
        "total": result.partitions_total,
        "accepted": result.partitions_accepted,
        "quarantined": result.partitions_quarantined,
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
        "ingest": f"{result.partitions_total} files, {result.new_partitions} new",
        "validate": f"{result.partitions_accepted} accepted, "
        f"{result.partitions_quarantined} quarantined",
        "train": ", ".join(f"{k} {v:,}" for k, v in result.split_rows.items()),
        "promote": "promoted" if result.promoted else "kept the champion",
    }
    return [
        {"stage": stage, "seconds": seconds, "what": handled.get(stage, "")}
        for stage, seconds in result.stage_seconds.items()
    ]


@task(name="record-run-metrics", **IO_RETRIES)
def record_run_metrics_task(result: PipelineResult) -> str:
    """Stage durations and counts: a table artifact, and a Prometheus file in the lake."""
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


# Dask diagnostics --------------------------------------------------------------------------
def _monitor_count(dask_scheduler: Any) -> int:
    return int(dask_scheduler.monitor.count)


def performance_report_path(lake: Lake, stage: str, flow_run_id: str) -> str:
    return lake.path("runs", "reports", "dask", flow_run_id, f"{stage}.html")


@contextmanager
def stage_diagnostics(
    client: Client,
    *,
    stage: str,
    mode: str,
    lake: str | None,
    flow_run_id: str | None,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> Iterator[None]:
    """Log the dashboard link now; write the stage's performance report when it ends.

    Same contents as ``distributed.performance_report`` (task stream, worker profile,
    bandwidth, scheduler stats), collected through the stage's own client rather than the
    process's current one, and written into the lake instead of the working directory.
    """
    logger.info("Stage %s: Dask dashboard at %s", stage, client.dashboard_link)
    if mode == "off" or not lake or not flow_run_id:
        yield
        return
    start = time.time()
    last_count = client.run_on_scheduler(_monitor_count)
    # Registers the scheduler's task-stream plugin so the report has a task stream.
    client.get_task_stream(start=0, stop=0)
    try:
        yield
    finally:
        write_performance_report(
            client,
            stage=stage,
            start=start,
            last_count=last_count,
            mode=mode,
            lake=Lake(lake),
            flow_run_id=flow_run_id,
            logger=logger,
        )


def write_performance_report(
    client: Client,
    *,
    stage: str,
    start: float,
    last_count: int,
    mode: str,
    lake: Lake,
    flow_run_id: str,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> str | None:
    """Collect the report from the scheduler, write it to the lake and link it; its URI.

    A report that cannot be made (scheduler gone, lake unwritable) is a warning: it must
    never turn a finished stage into a failed one.
    """
    try:
        scheduler: Any = client.scheduler
        page = client.sync(
            scheduler.performance_report,
            start=start,
            last_count=last_count,
            code=f"mlops-pipelines stage {stage}",
            mode=mode,
            callback_timeout=REPORT_TIMEOUT_S,
        )
        path = performance_report_path(lake, stage, flow_run_id)
        lake.write_bytes(path, page.encode())
    except Exception as err:  # diagnostics only: see the docstring
        logger.warning("Stage %s: no Dask performance report: %s", stage, err)
        return None
    uri = lake.url_of(path)
    logger.info("Stage %s: Dask performance report at %s", stage, uri)
    publish_link(
        key=artifact_key("dask-report", stage),
        link=uri,
        description=f"Dask performance report of the {stage} stage: task stream, worker "
        "profile, bandwidth",
        flow_run_id=flow_run_id,
    )
    return uri
