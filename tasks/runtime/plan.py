"""What a stage's runner will create or connect to: pure functions of a cluster config.

A plan is data (tested as data): the mode, the cluster's name, how many workers and what
each gets, and how long to wait for them. Nothing here starts or probes anything; the
stage's task runner (``tasks/runtime/runner.py``) acts on the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from blocks.cluster import ClusterMode, DaskClusterConfig, PerformanceReportMode
from tasks.runtime.kube import dask_cluster_resource, network_policy_resource
from tasks.runtime.sizing import size_workers, threads_per_worker

Stage = Literal["ingest", "validate", "train", "promote", "score"]

# Stages whose tasks are independent per partition; training is one XGBoost job across all
# workers and must not lose or gain workers halfway (XGBoost is not elastic).
ELASTIC_STAGES: frozenset[str] = frozenset({"ingest", "validate", "score"})


@dataclass(frozen=True)
class StagePlan:
    """What a stage's task runner connects to or creates, decided before anything starts."""

    mode: ClusterMode
    name: str
    workers: int
    # Workers that must have joined before cluster-wide work (training) starts, and how
    # long to wait for them.
    wait_for_workers: int
    worker_timeout: float
    address: str | None = None
    # What the runner passes to the cluster it creates: LocalCluster's keyword arguments,
    # or the DaskCluster resource and KubeCluster's (``tasks/runtime/kube.py``).
    cluster_kwargs: dict[str, Any] = field(default_factory=dict)
    adapt_kwargs: dict[str, Any] = field(default_factory=dict)
    performance_report: PerformanceReportMode = "cdn"


def workers_for(config: DaskClusterConfig, *, partitions: int, total_bytes: int, cpus: int) -> int:
    """Workers for ``partitions`` partitions of ``total_bytes`` (``sizing``'s rules).

    A local cluster never gets more worker processes than the machine has cores.
    """
    ceiling = min(config.max_workers, cpus) if config.mode == "local" else config.max_workers
    return size_workers(
        partitions=partitions,
        total_bytes=total_bytes,
        min_workers=min(config.min_workers, ceiling),
        max_workers=ceiling,
        partitions_per_worker=config.partitions_per_worker,
        memory_per_worker=config.memory_bytes,
    )


def plan_stage(
    config: DaskClusterConfig,
    *,
    stage: Stage,
    name: str,
    partitions: int | None,
    total_bytes: int | None,
    cpus: int,
    api_url: str | None = None,
    labels: dict[str, str] | None = None,
) -> StagePlan:
    """The stage's plan under ``config``.

    Without a partition count the stage is planned for ``max_workers``; elastic stages
    then release what they do not use.
    """
    elastic = stage in ELASTIC_STAGES and config.adaptive
    if partitions is None:
        workers = workers_for(
            config,
            partitions=config.max_workers * config.partitions_per_worker,
            total_bytes=0,
            cpus=cpus,
        )
    else:
        workers = workers_for(
            config, partitions=partitions, total_bytes=total_bytes or 0, cpus=cpus
        )
    adapt = {"minimum": min(config.min_workers, workers), "maximum": workers} if elastic else {}
    # Workers report task runs to the flow's Prefect API; without it (ephemeral mode) each
    # worker process would start a temporary API server of its own.
    runtime_env = {"PREFECT_API_URL": api_url} if api_url else {}
    if config.mode == "address":
        return StagePlan(
            mode="address",
            name=name,
            workers=workers,
            wait_for_workers=max(config.min_workers, 1),
            worker_timeout=config.worker_timeout,
            address=config.address,
            performance_report=config.performance_report,
        )
    if config.mode == "local":
        return _local_plan(
            config,
            stage=stage,
            name=name,
            workers=workers,
            partitions=partitions,
            cpus=cpus,
            adapt=adapt,
            env=runtime_env,
        )
    resource = dask_cluster_resource(
        config, name=name, workers=workers, env=runtime_env, labels=labels or {}
    )
    return StagePlan(
        mode="kubernetes",
        name=name,
        workers=workers,
        wait_for_workers=workers,
        worker_timeout=config.worker_timeout,
        cluster_kwargs={
            "custom_cluster_spec": resource,
            "namespace": config.namespace,
            "shutdown_on_close": True,
            "resource_timeout": int(config.worker_timeout),
            "startup_timeout": config.worker_timeout,
            # No progress bars in a flow's log.
            "quiet": True,
            "network_policy": (
                network_policy_resource(
                    cluster=name,
                    namespace=config.namespace,
                    labels=labels or {},
                    operator_namespace=config.operator_namespace,
                )
                if config.network_policy
                else None
            ),
        },
        adapt_kwargs=adapt,
        performance_report=config.performance_report,
    )


def _local_plan(
    config: DaskClusterConfig,
    *,
    stage: Stage,
    name: str,
    workers: int,
    partitions: int | None,
    cpus: int,
    adapt: dict[str, Any],
    env: dict[str, str],
) -> StagePlan:
    scheduler_kwargs = {"idle_timeout": config.idle_timeout} if config.idle_timeout else {}
    threads = threads_per_worker(workers=workers, cpus=cpus, configured=config.threads_per_worker)
    memory: int | str = config.memory_per_worker
    if stage == "train" and config.pack_local_training and workers > 1:
        # Local workers share one machine's cores and memory anyway: one process with all
        # of them trains faster (no inter-process AllReduce, one histogram per node) and
        # holds the same data within the same total memory budget.
        threads, memory, workers = threads * workers, config.memory_bytes * workers, 1
    # One partition to ingest or validate (a file added to a known landing folder):
    # starting a worker process and its imports costs more than the work, so the worker
    # runs in this process's threads (unless workers need an environment of their own).
    in_process = stage in ELASTIC_STAGES and partitions == 1 and not config.env
    return StagePlan(
        mode="local",
        name=name,
        workers=workers,
        wait_for_workers=workers,
        worker_timeout=config.worker_timeout,
        cluster_kwargs={
            "name": name,
            "n_workers": workers,
            "threads_per_worker": threads,
            "memory_limit": memory,
            "processes": not in_process,
            # In-process workers share this process's environment and settings.
            **({} if in_process else {"env": {**env, **config.env}}),
            "dashboard_address": ":0",
            "scheduler_kwargs": scheduler_kwargs,
        },
        adapt_kwargs=adapt,
        performance_report=config.performance_report,
    )
