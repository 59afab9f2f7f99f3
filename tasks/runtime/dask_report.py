"""A stage's Dask dashboard link and performance report.

The stage's task runner (``runner.py``) enters :func:`stage_diagnostics` once its cluster
is up, so every stage that used a cluster leaves a Dask performance report in the lake,
linked from its flow run, whether it succeeded or failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distributed import Client

from tasks.lake import Lake
from tasks.runtime.publish import artifact_key, publish_link

# Collecting the report is one scheduler call; a scheduler that does not answer in this
# long is gone, and the stage's own outcome matters more than its report.
REPORT_TIMEOUT_S = 60


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
