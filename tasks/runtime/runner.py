"""Per-stage Dask clusters: the stage flows' task runner, and how a flow's ``cluster``
parameter becomes a config.

Each stage flow runs on its own cluster, planned from the cluster config
(``blocks/cluster.py``) and the partitions the stage must process (``plan.py``), created
when the stage first needs it and closed when the stage ends, on success and on failure
(the runner's exit stack owns it). Inside a pipeline run a stage's cluster closes, and
writes its performance report, while the next stage starts (:class:`StageClosings`); the
run ends only once every one has closed.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import multiprocessing
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext, suppress
from multiprocessing import forkserver
from typing import Any, cast

import dask
from distributed import Client, LocalCluster
from distributed.gc import disable_gc_diagnosis
from distributed.utils import get_mp_context
from distributed.versions import optional_packages, required_packages
from prefect import get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import TaskRunner
from prefect.utilities.asyncutils import run_coro_as_sync
from prefect_dask import DaskTaskRunner
from prefect_dask.client import PrefectDaskClient

from blocks.cluster import DaskClusterConfig
from tasks.errors import ClusterError
from tasks.runtime.dask_report import stage_diagnostics
from tasks.runtime.kube import start_kube_cluster
from tasks.runtime.plan import Stage, StagePlan, plan_stage
from tasks.runtime.probe import check_api_from_workers, check_reachable


def resolve_cluster(cluster: DaskClusterConfig | str | None) -> DaskClusterConfig:
    """The config for a flow's ``cluster`` parameter, checked to be usable before any work.

    ``local`` (or nothing), ``kubernetes``, a scheduler address (``tcp://host:port``), or
    the name of a saved block of the config's type.
    """
    config = cluster_config(cluster)
    check_reachable(config)
    return config


def cluster_config(cluster: DaskClusterConfig | str | None) -> DaskClusterConfig:
    """``resolve_cluster`` without the reachability check."""
    if cluster is None or isinstance(cluster, DaskClusterConfig):
        return cluster or DaskClusterConfig()
    value = cluster.strip()
    try:
        if value in ("", "local"):
            return DaskClusterConfig()
        if value == "kubernetes":
            return DaskClusterConfig(mode="kubernetes")
        if "://" in value:
            return DaskClusterConfig(mode="address", address=value)
    except ValueError as err:
        raise ClusterError(f"cluster '{value}': {_first_error(err)}") from None
    try:
        loaded = cast(DaskClusterConfig, DaskClusterConfig.load(value))
    except ValueError:
        raise ClusterError(
            f"cluster '{value}' is not 'local', 'kubernetes', a scheduler address "
            f"(tcp://host:port) or the name of a saved "
            f"'{DaskClusterConfig.get_block_type_name()}' block"
        ) from None
    return loaded


def _first_error(err: ValueError) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first.get("msg", err)).removeprefix("Value error, ")
    return str(err)


def current_api_url() -> str | None:
    """The Prefect API this process talks to, starting the ephemeral one if that is the mode."""

    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured)
    with get_client(sync_client=True) as client:
        return str(client.api_url)


def quiet_gc_diagnosis() -> None:
    """Turn off Dask's garbage-collection diagnosis in this process, which a local cluster's
    scheduler turned on. It only logs at INFO (below the ``distributed.gc`` level), and its
    gc callback is where Prefect's timeout alarm can land: the callback's state then breaks,
    and every later full collection printed an ignored ``AssertionError`` or
    ``CancelledError`` traceback (nine in one run of 1,000 partitions)."""
    disable_gc_diagnosis(force=True)


def cluster_name(stage: str, flow_run_id: str | None) -> str:
    """``mlops-<stage>-<12 hex of the flow run id>``: unique per flow run, and a valid
    Kubernetes name (the operator appends ``-scheduler`` and needs 63 characters at most)."""
    suffix = (flow_run_id or os.urandom(6).hex()).replace("-", "")[:12]
    return f"mlops-{stage}-{suffix}"


logger = logging.getLogger(__name__)


class StageClosings:
    """Stage clusters closing in the background, each with its performance report.

    Collecting a stage's report costs its scheduler about a second, and closing its workers
    a fraction more: work the next stage need not wait for. Errors are kept and raised by
    :meth:`join`, so a cluster that fails to close still fails the run.
    """

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def __reduce__(self) -> tuple[type[StageClosings], tuple[()]]:
        # Task runs carry their flow run's context, task runner included, to the workers:
        # there an empty one stands in (threads and locks do not pickle, nor mean anything).
        return (StageClosings, ())

    def close_later(self, stack: ExitStack, *, stage: str) -> None:
        def close() -> None:
            try:
                stack.close()
            except BaseException as err:  # raised again by join(), in the run's thread
                logger.warning("Stage %s: closing its cluster failed: %s", stage, err)
                self._errors.append(err)

        # In a copy of this thread's context, as Prefect runs its heartbeat thread: the
        # report's link goes to the same Prefect API as the stage (settings live there).
        thread = threading.Thread(
            target=contextvars.copy_context().run, args=(close,), name=f"mlops-close-{stage}"
        )
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        """Wait for every stage to close; raise the first error one met."""
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]


@contextmanager
def closing_in_background() -> Iterator[StageClosings]:
    """Stage clusters handed to the yielded :class:`StageClosings` (``stage_task_runner(...,
    closings=...)``) close while the block goes on; all have closed when it ends, also when
    it fails (then a closing error is logged, not raised over the block's own)."""
    closings = StageClosings()
    try:
        yield closings
    except BaseException:
        with suppress(Exception):
            closings.join()
        raise
    closings.join()


class StageTaskRunner(DaskTaskRunner):
    """A DaskTaskRunner whose cluster is planned from a cluster config when first needed.

    The config is ``cluster`` if given (the pipeline passes the one it resolved, with the
    partition count and bytes it measured); otherwise the stage flow run's own ``cluster``
    parameter; otherwise a local cluster. Nothing is created until a task is submitted or
    the stage asks for its scheduler, so a stage with nothing to do starts no cluster.
    """

    def __init__(
        self,
        *,
        stage: Stage,
        cluster: DaskClusterConfig | str | None = None,
        partitions: int | None = None,
        total_bytes: int | None = None,
        closings: StageClosings | None = None,
    ) -> None:
        super().__init__()
        self.stage: Stage = stage
        self.cluster = cluster
        self.partitions = partitions
        self.total_bytes = total_bytes
        self.closings = closings
        self.plan: StagePlan | None = None
        self._worker_api: str | None = None
        # Process-wide settings the stage holds while it runs (the worker start method);
        # left when the stage ends, never from a background closing.
        self._settings = ExitStack()

    def submit(
        self, task: Any, parameters: Any, wait_for: Any = None, dependencies: Any = None
    ) -> Any:
        """Submit with the settings the task run needs where it runs: on an existing
        cluster's workers, the flow's own Prefect API (workers started without
        ``PREFECT_API_URL`` would otherwise each start a temporary server of their own)."""
        with self._worker_settings():
            return super().submit(task, parameters, wait_for, dependencies)

    def _worker_settings(self) -> Any:
        plan = self.plan or self._prepare()
        if plan.mode != "address":
            return nullcontext()  # clusters we create get PREFECT_API_URL in their env
        if self._worker_api is None:
            url = current_api_url()
            if url is None:
                return nullcontext()
            check_api_from_workers(self.client, url)
            self._worker_api = url
        # Task runs carry the submitting thread's settings to the worker that runs them.
        return temporary_settings(updates={PREFECT_API_URL: self._worker_api})

    def duplicate(self) -> StageTaskRunner:
        return type(self)(
            stage=self.stage,
            cluster=self.cluster,
            partitions=self.partitions,
            total_bytes=self.total_bytes,
            closings=self.closings,
        )

    def __exit__(self, *args: Any) -> None:
        """Close the stage's cluster (and write its report): now, or, with ``closings``,
        in the background while the run goes on to its next stage."""
        try:
            if self.closings is not None and self._client is not None:
                self.closings.close_later(self._exit_stack.pop_all(), stage=self.stage)
            super().__exit__(*args)
        finally:
            self._settings.close()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StageTaskRunner) and (
            self.stage,
            self.cluster,
            self.partitions,
            self.total_bytes,
        ) == (other.stage, other.cluster, other.partitions, other.total_bytes)

    __hash__ = None  # type: ignore[assignment]

    @property
    def client(self) -> PrefectDaskClient:
        """The stage's client; the first call creates (or connects to) the planned cluster.

        Unlike DaskTaskRunner's, it never adopts a Dask client that happens to be current in
        the flow's process: the stage runs where its plan says, on a cluster it owns.
        """
        if self._client is None:
            self._client = self._start()
        return self._client

    def _start(self) -> PrefectDaskClient:

        plan = self.plan or self._prepare()
        target: Any = plan.address
        kwargs = plan.cluster_kwargs
        if plan.mode == "local" and kwargs.get("processes", True):
            self._settings.enter_context(forked_workers(self.stage))
            # A forked worker inherits the forkserver's environment, from when it started:
            # hand it this process's as it is now (what a spawned worker would inherit).
            # It also reads Prefect's settings from that environment (``worker_setup``).
            kwargs = {
                **kwargs,
                "env": {**os.environ, **kwargs.get("env", {})},
                "preload": [WORKER_SETUP],
            }
        if plan.mode != "address":
            start = LocalCluster if plan.mode == "local" else start_kube_cluster
            # Entered on the runner's exit stack: closed when the stage ends, however it ends.
            self._cluster = self._exit_stack.enter_context(start(**kwargs))
            if plan.mode == "local":
                quiet_gc_diagnosis()
            if plan.adapt_kwargs:
                adapting = self._cluster.adapt(**plan.adapt_kwargs)
                if asyncio.iscoroutine(adapting):
                    run_coro_as_sync(adapting)
            target = self._cluster
        client: PrefectDaskClient = self._exit_stack.enter_context(
            PrefectDaskClient(target, **self.client_kwargs)
        )
        # Entered after the client, so left before it closes: the report is collected
        # through it when the stage ends.
        self._exit_stack.enter_context(self._diagnostics(client, plan))
        return client

    def _diagnostics(self, client: PrefectDaskClient, plan: StagePlan) -> Any:

        context = FlowRunContext.get()
        lake = (context.parameters or {}).get("lake") if context else None
        return stage_diagnostics(
            client,
            stage=self.stage,
            mode=plan.performance_report,
            lake=lake if isinstance(lake, str) else None,
            flow_run_id=str(context.flow_run.id) if context and context.flow_run else None,
            logger=get_run_logger() if context is not None else self.logger,
        )

    def _prepare(self) -> StagePlan:

        context = FlowRunContext.get()
        flow_run = context.flow_run if context else None
        value = self.cluster
        if value is None and context is not None:
            value = (context.parameters or {}).get("cluster")
        config = resolve_cluster(value)
        plan = plan_stage(
            config,
            stage=self.stage,
            name=cluster_name(self.stage, str(flow_run.id) if flow_run else None),
            partitions=self.partitions,
            total_bytes=self.total_bytes,
            cpus=os.cpu_count() or 1,
            # Workers of clusters we create report task runs to the flow's API; outside a
            # flow run there is nothing to report (and no API to start for it).
            api_url=current_api_url() if context and config.mode != "address" else None,
            labels=flow_run_labels(self.stage, context),
        )
        self.plan = plan
        # In the stage's run log (the Prefect UI), not only on this process's console.
        logger = get_run_logger() if context is not None else self.logger
        logger.info(
            "Stage %s: %s, %d worker(s) for %s partition(s)%s",
            self.stage,
            config.describe(),
            plan.workers,
            "?" if self.partitions is None else self.partitions,
            ", adaptive" if plan.adapt_kwargs else "",
        )
        return plan

    def narrow(self, partitions: int) -> None:
        """Plan for only ``partitions`` of the partitions it was sized for (the rest were
        found in the cache), if the cluster is not planned yet; bytes shrink in proportion.
        A runner sized for an unknown count (a stage flow run alone) takes this one."""
        if self.plan is not None:
            return
        if self.partitions is None:
            self.partitions = partitions
            return
        if partitions >= self.partitions:
            return
        if self.total_bytes is not None and self.partitions > 0:
            self.total_bytes = self.total_bytes * partitions // self.partitions
        self.partitions = partitions

    def ready_client(self) -> PrefectDaskClient:
        """The client once every planned worker has joined (XGBoost needs them all from the
        start: workers that join later get no data and no part in training)."""
        client = self.client
        assert self.plan is not None
        try:
            client.wait_for_workers(self.plan.wait_for_workers, timeout=self.plan.worker_timeout)
        except TimeoutError:
            info = client.scheduler_info(n_workers=-1)
            raise ClusterError(
                f"stage {self.stage}: only {len(info['workers'])} of "
                f"{self.plan.wait_for_workers} Dask worker(s) joined {info['address']} "
                f"within {self.plan.worker_timeout:g} s"
            ) from None
        return client


# What each stage's workers import before their first task, at seconds of CPU each here
# (Great Expectations ~4 s, XGBoost with scikit-learn ~1.5 s, Prefect ~1 s). The forkserver
# imports them once, so every worker forked from it starts with them, in every stage of
# every run of this process. The first stage that creates local workers decides: a process
# that runs one stage preloads only what its workers use. Third-party libraries only;
# a name that does not import is skipped by the forkserver.
_EVERY_WORKER = ("prefect", "prefect_dask")
_GX = ("great_expectations",)
_XGBOOST = ("xgboost", "xgboost.dask", "sklearn.metrics")
WORKER_IMPORTS: dict[Stage, tuple[str, ...]] = {
    "ingest": _EVERY_WORKER,
    "validate": _EVERY_WORKER + _GX,
    "train": _EVERY_WORKER + _XGBOOST,
    "promote": _EVERY_WORKER + _XGBOOST,
    "score": _EVERY_WORKER + _GX + _XGBOOST,
}

# The Dask preload module each forked worker runs first.
WORKER_SETUP = "tasks.runtime.worker_setup"


def has_forkserver() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


def start_forkserver(stages: Iterable[Stage]) -> None:
    """Start this process's forkserver now, with the imports of the workers of ``stages``,
    if it is not running.

    It returns at once: the forkserver imports while the caller goes on. The first worker
    forked waits for them; every later one starts with them done. It is started when a
    stage first creates local workers, not earlier: a run with nothing to compute (a warm
    re-run) starts no worker and pays for no imports.
    """
    if not has_forkserver():
        return
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        context = get_mp_context()  # Dask sets its own preload list here, once per process
    # Dask's list (distributed, pandas, numpy, ...) and ours. It counts only for a server not
    # started yet: a running one keeps what it has (workers then import the rest themselves).
    ours = dict.fromkeys(name for stage in stages for name in WORKER_IMPORTS[stage])
    context.set_forkserver_preload(["distributed", *required_packages, *optional_packages, *ours])
    forkserver.ensure_running()


def start_forkserver_early(config: DaskClusterConfig, *, new_partitions: int) -> None:
    """Start the forkserver the local workers of a run that ingested ``new_partitions`` new
    partitions will fork from now, if ``config`` creates local worker processes, there is
    new data and none is running yet.

    A run whose ingest had one split ran it in this process (``plan.py``) and started no
    forkserver; its training stage would otherwise start one when it needs its worker, and
    wait seconds for its imports. One new partition is validated in this process too, so
    the forkserver imports what training runs; more are validated on workers forked from
    it, so it imports what validation runs as well. Started once a run knows those stages
    follow, it imports while the stages before them run.
    """
    if config.mode != "local" or new_partitions < 1:
        return
    start_forkserver(("validate", "train") if new_partitions > 1 else ("train",))


@contextmanager
def forked_workers(stage: Stage) -> Iterator[None]:
    """Local worker processes forked from a forkserver, not spawned afresh.

    A spawned worker starts a new interpreter and imports pandas, pyarrow, Dask, Prefect and
    what its stage runs (Great Expectations, XGBoost) before its first task, for every worker
    of every stage. The forkserver is a fresh process too (no threads or state of this one
    are inherited, unlike ``fork``), so it is as safe; it imports those once
    (:data:`WORKER_IMPORTS`) and lives as long as this process, so workers start in a
    fraction of the time. Where there is no forkserver (Windows), workers are spawned as
    usual.
    """
    if not has_forkserver():
        yield
        return
    start_forkserver((stage,))
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        yield


def flow_run_labels(stage: str, context: Any) -> dict[str, str]:
    """Labels that tie a cluster to the Prefect flow run it serves (for kubectl and cleanup)."""
    labels = {"app.kubernetes.io/name": "mlops-pipelines", "mlops.io/stage": stage}
    if context is not None and context.flow_run is not None:
        labels["prefect.io/flow-run-id"] = str(context.flow_run.id)
        labels["prefect.io/flow-run-name"] = str(context.flow_run.name)
        labels["prefect.io/flow-name"] = str(context.flow.name)
    return labels


def stage_task_runner(
    stage: Stage,
    *,
    cluster: DaskClusterConfig | str | None = None,
    partitions: int | None = None,
    total_bytes: int | None = None,
    closings: StageClosings | None = None,
) -> TaskRunner[Any]:
    """The runner for ``stage``: sized for ``partitions`` (``max_workers`` when unknown);
    its cluster closes when the stage ends, or in the background with ``closings``."""
    return StageTaskRunner(
        stage=stage,
        cluster=cluster,
        partitions=partitions,
        total_bytes=total_bytes,
        closings=closings,
    )


@contextmanager
def stage_client(scheduler: str) -> Iterator[Client]:
    """A client of the stage's cluster, current for the block (xgboost.dask looks the client
    up as the current one even when it is passed in), closed afterwards."""

    with Client(scheduler, set_as_default=False) as client, client.as_current():
        yield client


def narrow_stage(partitions: int) -> None:
    """Size the running stage's cluster, not started yet, for ``partitions`` partitions
    (what is left to compute once cached results are found). No-op outside a stage."""

    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    if isinstance(runner, StageTaskRunner):
        runner.narrow(partitions)


def stage_plan() -> StagePlan:
    """The running stage's cluster plan (workers to wait for, and for how long).

    Call after ``stage_scheduler_address()``, which plans and starts the cluster.
    """

    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    if not isinstance(runner, StageTaskRunner) or runner.plan is None:
        raise RuntimeError("call stage_scheduler_address() first: the cluster is not planned")
    return runner.plan


def stage_scheduler_address() -> str:
    """The scheduler address of the running stage's cluster, once all its workers joined.

    xgboost.dask drives training from a client process; training from inside a worker task
    (``worker_client``) deadlocks while building the DMatrix. So cluster-wide work such as
    training is run by a task in the flow process that connects its own client here.
    """

    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    if not isinstance(runner, StageTaskRunner):
        raise RuntimeError("this stage must run in a flow whose task runner is a StageTaskRunner")
    return str(runner.ready_client().scheduler_info()["address"])


@task(name="resolve-cluster")
def resolve_cluster_task(cluster: str) -> DaskClusterConfig:
    """Resolve and check the cluster config (a bad or unreachable one fails before any work)."""
    return resolve_cluster(cluster)
