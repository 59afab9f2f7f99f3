"""Per-stage Dask clusters: the stage flows' task runner.

Each stage flow runs on its own cluster, planned from the cluster config (``blocks.cluster``)
and the partitions the stage must process, created when the stage first needs it and closed
when the stage ends, on success and on failure (the runner's exit stack owns it).
"""

from __future__ import annotations

import os
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from prefect import get_run_logger, task
from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner

from tasks.errors import ClusterError

T = TypeVar("T")

if TYPE_CHECKING:
    from distributed import Client
    from prefect_dask.client import PrefectDaskClient

    from blocks.cluster import DaskClusterConfig, Stage, StagePlan


def current_api_url() -> str | None:
    """The Prefect API this process talks to, starting the ephemeral one if that is the mode."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured)
    with get_client(sync_client=True) as client:
        return str(client.api_url)


def check_scheduler(address: str, *, timeout: float) -> None:
    """Fail with a clear error unless a Dask scheduler answers at ``address``."""
    import socket
    from urllib.parse import urlsplit

    # A plain TCP connect first: a refused or unresolvable address fails in milliseconds,
    # where the Dask client would keep retrying until its timeout.
    parts = urlsplit(address)
    try:
        socket.create_connection((parts.hostname or "", parts.port or 8786), timeout).close()
    except OSError as err:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {err}") from None
    # Then Dask's own handshake, bounded as a whole: a port that accepts connections but
    # is not a scheduler (a proxy, another service) would otherwise hang the client.
    try:
        identity = run_async(_scheduler_identity(address), timeout=timeout)
    except (OSError, TimeoutError) as err:
        raise ClusterError(
            f"no Dask scheduler answered at {address}: {describe_error(err, timeout)}"
        ) from None
    if identity.get("type") != "Scheduler":
        raise ClusterError(f"{address} is not a Dask scheduler (it is a {identity.get('type')})")


def describe_error(err: BaseException, timeout: float) -> str:
    """``err`` in one line; a bare timeout says how long was waited."""
    if isinstance(err, TimeoutError) and not str(err):
        return f"no answer within {timeout:g} s"
    return f"{type(err).__name__}: {err}"


async def _scheduler_identity(address: str) -> dict[str, Any]:
    from distributed.core import rpc

    remote = rpc(address)
    try:
        return dict(await remote.identity())
    finally:
        await remote.close_rpc()


def run_async(coroutine: Coroutine[Any, Any, T], *, timeout: float) -> T:
    """Run ``coroutine`` to completion within ``timeout`` seconds, in its own thread and
    event loop (the caller may be inside a loop already, as Prefect tasks can be)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coroutine, timeout)).result()


def cluster_name(stage: str, flow_run_id: str | None) -> str:
    """``mlops-<stage>-<12 hex of the flow run id>``: unique per flow run, and a valid
    Kubernetes name (the operator appends ``-scheduler`` and needs 63 characters at most)."""
    suffix = (flow_run_id or os.urandom(6).hex()).replace("-", "")[:12]
    return f"mlops-{stage}-{suffix}"


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
    ) -> None:
        super().__init__()
        self.stage: Stage = stage
        self.cluster = cluster
        self.partitions = partitions
        self.total_bytes = total_bytes
        self.plan: StagePlan | None = None

    def duplicate(self) -> StageTaskRunner:
        return type(self)(
            stage=self.stage,
            cluster=self.cluster,
            partitions=self.partitions,
            total_bytes=self.total_bytes,
        )

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
        import asyncio

        from prefect.utilities.asyncutils import run_coro_as_sync
        from prefect.utilities.importtools import from_qualified_name
        from prefect_dask.client import PrefectDaskClient

        plan = self.plan or self._prepare()
        target: Any = plan.address
        if plan.cluster_class:
            cluster_class = from_qualified_name(plan.cluster_class)
            # Entered on the runner's exit stack: closed when the stage ends, however it ends.
            self._cluster = self._exit_stack.enter_context(cluster_class(**plan.cluster_kwargs))
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
        from prefect.context import FlowRunContext

        from tasks.observability import stage_diagnostics

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
        from prefect.context import FlowRunContext

        from blocks.cluster import DaskClusterConfig

        context = FlowRunContext.get()
        flow_run = context.flow_run if context else None
        value = self.cluster
        if value is None and context is not None:
            value = (context.parameters or {}).get("cluster")
        config = DaskClusterConfig.resolve(value)
        config.check_reachable()
        plan = config.plan(
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
        found in the cache), if the cluster is not planned yet; bytes shrink in proportion."""
        if self.plan is not None or self.partitions is None or partitions >= self.partitions:
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
) -> TaskRunner[Any]:
    """The runner for ``stage``: sized for ``partitions`` (``max_workers`` when unknown)."""
    return StageTaskRunner(
        stage=stage, cluster=cluster, partitions=partitions, total_bytes=total_bytes
    )


@contextmanager
def stage_client(scheduler: str) -> Iterator[Client]:
    """A client of the stage's cluster, current for the block (xgboost.dask looks the client
    up as the current one even when it is passed in), closed afterwards."""
    from distributed import Client

    with Client(scheduler, set_as_default=False) as client, client.as_current():
        yield client


def narrow_stage(partitions: int) -> None:
    """Size the running stage's cluster, not started yet, for ``partitions`` partitions
    (what is left to compute once cached results are found). No-op outside a stage."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    if isinstance(runner, StageTaskRunner):
        runner.narrow(partitions)


def stage_plan() -> StagePlan:
    """The running stage's cluster plan (workers to wait for, and for how long).

    Call after ``stage_scheduler_address()``, which plans and starts the cluster.
    """
    from prefect.context import FlowRunContext

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
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    if not isinstance(runner, StageTaskRunner):
        raise RuntimeError("this stage must run in a flow whose task runner is a StageTaskRunner")
    return str(runner.ready_client().scheduler_info()["address"])


def resolve_cluster(cluster: DaskClusterConfig | str | None) -> DaskClusterConfig:
    """The cluster config for a ``cluster`` parameter, checked to be usable before any work."""
    from blocks.cluster import DaskClusterConfig

    config = DaskClusterConfig.resolve(cluster)
    config.check_reachable()
    return config


@task(name="check-cluster")
def resolve_cluster_task(cluster: str) -> DaskClusterConfig:
    """Resolve and check the cluster config (a bad or unreachable one fails before any work)."""
    return resolve_cluster(cluster)
