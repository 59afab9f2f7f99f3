"""Per-stage Dask clusters for the stage flows' task runners.

Each stage flow runs on its own ephemeral cluster, created when the flow starts and closed
when it ends (on success and on failure: the task runner owns it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner

if TYPE_CHECKING:
    from distributed import Client


def local_cluster_shape(
    partitions: int, *, cpus: int | None = None, max_workers: int = 4
) -> tuple[int, int]:
    """(workers, threads per worker) for a LocalCluster that processes ``partitions`` partitions.

    One worker per partition up to the machine's cores (and ``max_workers``), and the cores
    left over as threads, so a one-partition stage gets one worker with every core.
    """
    cpus = cpus or os.cpu_count() or 1
    workers = max(1, min(partitions, cpus, max_workers))
    return workers, max(1, cpus // workers)


def current_api_url() -> str | None:
    """The Prefect API this process talks to, starting the ephemeral one if that is the mode."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured)
    with get_client(sync_client=True) as client:
        return str(client.api_url)


class StageTaskRunner(DaskTaskRunner):
    """A DaskTaskRunner whose local workers report to the flow's Prefect API.

    Without a configured ``PREFECT_API_URL`` (Prefect's ephemeral mode), every worker
    process would otherwise start a temporary API server of its own on the same database.
    """

    def __enter__(self) -> StageTaskRunner:
        if self.address is None and self._cluster is None:
            url = current_api_url()
            if url:
                env = dict(self.cluster_kwargs.get("env") or {})
                env.setdefault("PREFECT_API_URL", url)
                self.cluster_kwargs["env"] = env
        super().__enter__()
        return self


def stage_task_runner(*, partitions: int | None = None) -> TaskRunner[Any]:
    """A runner with a LocalCluster sized for ``partitions`` (the machine's cores when unknown)."""
    workers, threads = local_cluster_shape(partitions or os.cpu_count() or 1)
    cluster_kwargs: dict[str, Any] = {
        "n_workers": workers,
        "threads_per_worker": threads,
        "processes": True,
        "dashboard_address": ":0",
    }
    return StageTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=cluster_kwargs)


@contextmanager
def stage_client(scheduler: str) -> Iterator[Client]:
    """A client of the stage's cluster, current for the block (xgboost.dask looks the client
    up as the current one even when it is passed in), closed afterwards."""
    from distributed import Client

    with Client(scheduler, set_as_default=False) as client, client.as_current():
        yield client


def stage_scheduler_address() -> str:
    """The scheduler address of the running stage flow's Dask cluster (started if needed).

    xgboost.dask drives training from a client process; training from inside a worker task
    (``worker_client``) deadlocks while building the DMatrix. So cluster-wide work such as
    training is run by a task in the flow process that connects its own client here.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    if not isinstance(runner, DaskTaskRunner):
        raise RuntimeError("this stage must run in a flow whose task runner is a DaskTaskRunner")
    return str(runner.client.scheduler_info()["address"])
