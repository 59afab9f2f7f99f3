"""Where and how big each stage's Dask cluster is: a Prefect Block.

Three modes:

``local``       a LocalCluster of worker processes on this machine (the default);
``address``     an existing Dask scheduler, ``tcp://host:port`` (its workers are its own);
``kubernetes``  a ``DaskCluster`` created through the dask-kubernetes operator for the stage
                and deleted when the stage ends.

Save one with ``DaskClusterConfig(mode="kubernetes", image=...).save("prod")`` and pass
``cluster="prod"`` to a flow (or ``mlops run --cluster prod``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast

from dask.utils import parse_bytes
from prefect.blocks.core import Block
from pydantic import Field, field_validator, model_validator

from tasks.errors import ClusterError
from tasks.sizing import size_workers, threads_per_worker

ClusterMode = Literal["local", "address", "kubernetes"]
PerformanceReportMode = Literal["cdn", "inline", "off"]
Stage = Literal["ingest", "validate", "train", "promote"]
# Stages whose tasks are independent per partition; training is one XGBoost job across all
# workers and must not lose or gain workers halfway (XGBoost is not elastic).
ELASTIC_STAGES: frozenset[str] = frozenset({"ingest", "validate"})
SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls)://[^\s/:]+:\d{1,5}$")
RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def default_performance_report() -> PerformanceReportMode:
    """``MLOPS_DASK_PERFORMANCE_REPORT`` (cdn, inline, off), else cdn: switches the reports
    for every run on a machine without editing its cluster blocks (collecting one costs the
    scheduler about a second per stage)."""
    value = os.environ.get("MLOPS_DASK_PERFORMANCE_REPORT", "cdn").strip().lower()
    if value not in ("cdn", "inline", "off"):
        raise ClusterError(
            f"MLOPS_DASK_PERFORMANCE_REPORT must be cdn, inline or off, not {value!r}"
        )
    return cast(PerformanceReportMode, value)


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
    cluster_class: str | None = None
    cluster_kwargs: dict[str, Any] = field(default_factory=dict)
    adapt_kwargs: dict[str, Any] = field(default_factory=dict)
    performance_report: PerformanceReportMode = "cdn"


class DaskClusterConfig(Block):
    """How each pipeline stage gets its Dask cluster, and how many workers it may have."""

    _block_type_name: ClassVar[str] = "MLOps Dask Cluster"
    _description: ClassVar[str] = (
        "Per-stage Dask clusters for the mlops pipeline: local, an existing scheduler, or "
        "Kubernetes (dask-kubernetes operator), sized from the partitions each stage processes."
    )

    mode: ClusterMode = Field("local", description="local, address or kubernetes.")
    performance_report: PerformanceReportMode = Field(
        default_factory=lambda: default_performance_report(),
        description="Dask performance report per stage in <lake>/runs/reports/dask: cdn "
        "(small, the page loads Bokeh from its CDN), inline (self-contained, ~1 MB more), off. "
        "Default: $MLOPS_DASK_PERFORMANCE_REPORT, else cdn.",
    )
    address: str | None = Field(
        None, description="Scheduler address for mode 'address', e.g. tcp://10.0.0.5:8786."
    )
    min_workers: int = Field(1, ge=0, description="Fewest workers a stage runs with.")
    max_workers: int = Field(
        4, ge=1, description="Most workers a stage gets (local mode: also at most the cores)."
    )
    partitions_per_worker: int = Field(
        2, ge=1, description="Partitions one worker is planned to process."
    )
    threads_per_worker: int | None = Field(
        None, ge=1, description="Threads per worker (local default: cores shared out)."
    )
    memory_per_worker: str = Field(
        "4GiB", description="Memory limit of each worker, e.g. 4GiB; also used for sizing."
    )
    pack_local_training: bool = Field(
        True,
        description="Local mode: train on one worker process with every core and the memory "
        "of the workers training was sized for (XGBoost's threads beat one-thread processes "
        "that must AllReduce on one machine). Off: one process per sized worker.",
    )
    adaptive: bool = Field(
        True,
        description="Let ingest and validate release idle workers (training is always fixed).",
    )
    idle_timeout: int = Field(
        900,
        ge=0,
        description="Seconds after which an idle, forgotten cluster shuts itself down (0: never).",
    )
    worker_timeout: float = Field(
        600, gt=0, description="Seconds to wait for a scheduler or for workers to join."
    )
    # Kubernetes -----------------------------------------------------------------------
    image: str = Field(
        "mlops-pipelines:latest",
        description="Image for scheduler and workers (infra/docker/Dockerfile).",
    )
    namespace: str = Field("mlops", description="Namespace the DaskCluster is created in.")
    resources: dict[str, dict[str, str]] | None = Field(
        None,
        description="Worker container resources (requests/limits); default from "
        "threads_per_worker and memory_per_worker.",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment for scheduler and workers."
    )
    env_from_secret: str | None = Field(
        None, description="Secret whose keys become environment variables (e.g. API keys)."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod nodeSelector.")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="Pod tolerations.")
    service_account: str | None = Field(
        "mlops-runner", description="Service account for scheduler and worker pods."
    )
    scheduler_service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="How the flow reaches the scheduler (ClusterIP in-cluster)."
    )

    @field_validator("memory_per_worker")
    @classmethod
    def _memory(cls, value: str) -> str:
        try:
            parsed = parse_bytes(value)
        except (ValueError, TypeError):
            raise ValueError(f"'{value}' is not a size such as 4GiB or 512MB") from None
        if parsed < 2**26:
            raise ValueError(f"'{value}' is too little memory for a Dask worker (64MiB at least)")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not RFC1123_LABEL.match(value):
            raise ValueError(f"'{value}' is not a valid Kubernetes namespace name")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DaskClusterConfig:
        if self.min_workers > self.max_workers:
            raise ValueError(
                f"min_workers ({self.min_workers}) is more than max_workers ({self.max_workers})"
            )
        if self.mode == "address":
            if not self.address:
                raise ValueError("mode 'address' needs address, e.g. tcp://host:8786")
            if not SCHEDULER_ADDRESS.match(self.address):
                raise ValueError(
                    f"address '{self.address}' is not a scheduler address like tcp://host:8786"
                )
        elif self.address:
            raise ValueError(f"address is only used in mode 'address', not '{self.mode}'")
        if self.mode == "kubernetes" and not self.image.strip():
            raise ValueError("mode 'kubernetes' needs the image its scheduler and workers run")
        return self

    # Choosing one ----------------------------------------------------------------------
    @classmethod
    def resolve(cls, cluster: DaskClusterConfig | str | None) -> DaskClusterConfig:
        """The config for a flow's ``cluster`` parameter.

        ``local`` (or nothing), ``kubernetes``, a scheduler address (``tcp://host:port``), or
        the name of a saved block of this type.
        """
        if cluster is None or isinstance(cluster, DaskClusterConfig):
            return cluster or cls()
        value = cluster.strip()
        try:
            if value in ("", "local"):
                return cls()
            if value == "kubernetes":
                return cls(mode="kubernetes")
            if "://" in value:
                return cls(mode="address", address=value)
        except ValueError as err:
            raise ClusterError(f"cluster '{value}': {_first_error(err)}") from None
        try:
            loaded = cast(DaskClusterConfig, cls.load(value))
        except ValueError:
            raise ClusterError(
                f"cluster '{value}' is not 'local', 'kubernetes', a scheduler address "
                f"(tcp://host:port) or the name of a saved '{cls._block_type_name}' block"
            ) from None
        return loaded

    # Sizing ----------------------------------------------------------------------------
    @property
    def memory_bytes(self) -> int:
        return int(parse_bytes(self.memory_per_worker))

    def workers_for(self, *, partitions: int, total_bytes: int, cpus: int) -> int:
        """Workers for ``partitions`` partitions of ``total_bytes`` (tasks.sizing's rules).

        A local cluster never gets more worker processes than the machine has cores.
        """
        ceiling = min(self.max_workers, cpus) if self.mode == "local" else self.max_workers
        return size_workers(
            partitions=partitions,
            total_bytes=total_bytes,
            min_workers=min(self.min_workers, ceiling),
            max_workers=ceiling,
            partitions_per_worker=self.partitions_per_worker,
            memory_per_worker=self.memory_bytes,
        )

    def plan(
        self,
        *,
        stage: Stage,
        name: str,
        partitions: int | None,
        total_bytes: int | None,
        cpus: int,
        api_url: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> StagePlan:
        """What the stage's runner will create (or connect to): pure, so it is tested as data.

        Without a partition count the stage is planned for ``max_workers``; elastic stages
        then release what they do not use.
        """
        elastic = stage in ELASTIC_STAGES and self.adaptive
        if partitions is None:
            workers = self.workers_for(
                partitions=self.max_workers * self.partitions_per_worker, total_bytes=0, cpus=cpus
            )
        else:
            workers = self.workers_for(
                partitions=partitions, total_bytes=total_bytes or 0, cpus=cpus
            )
        adapt = {"minimum": min(self.min_workers, workers), "maximum": workers} if elastic else {}
        # Workers report task runs to the flow's Prefect API; without it (ephemeral mode) each
        # worker process would start a temporary API server of its own.
        runtime_env = {"PREFECT_API_URL": api_url} if api_url else {}
        if self.mode == "address":
            return StagePlan(
                mode="address",
                name=name,
                workers=workers,
                wait_for_workers=max(self.min_workers, 1),
                worker_timeout=self.worker_timeout,
                address=self.address,
                performance_report=self.performance_report,
            )
        if self.mode == "local":
            scheduler_kwargs = {"idle_timeout": self.idle_timeout} if self.idle_timeout else {}
            threads = threads_per_worker(
                workers=workers, cpus=cpus, configured=self.threads_per_worker
            )
            memory: int | str = self.memory_per_worker
            if stage == "train" and self.pack_local_training and workers > 1:
                # Local workers share one machine's cores and memory anyway: one process with
                # all of them trains faster (no inter-process AllReduce, one histogram per
                # node) and holds the same data within the same total memory budget.
                threads, memory, workers = threads * workers, self.memory_bytes * workers, 1
            # One partition to ingest or validate (a file added to a known landing folder):
            # starting a worker process and its imports costs more than the work, so the
            # worker runs in this process's threads (unless workers need an environment of
            # their own).
            in_process = stage in ELASTIC_STAGES and partitions == 1 and not self.env
            return StagePlan(
                mode="local",
                name=name,
                workers=workers,
                wait_for_workers=workers,
                worker_timeout=self.worker_timeout,
                cluster_class="distributed.LocalCluster",
                cluster_kwargs={
                    "name": name,
                    "n_workers": workers,
                    "threads_per_worker": threads,
                    "memory_limit": memory,
                    "processes": not in_process,
                    # In-process workers share this process's environment and settings.
                    **({} if in_process else {"env": {**runtime_env, **self.env}}),
                    "dashboard_address": ":0",
                    "scheduler_kwargs": scheduler_kwargs,
                },
                adapt_kwargs=adapt,
                performance_report=self.performance_report,
            )
        from tasks.kube import dask_cluster_resource

        resource = dask_cluster_resource(
            self, name=name, workers=workers, env=runtime_env, labels=labels or {}
        )
        return StagePlan(
            mode="kubernetes",
            name=name,
            workers=workers,
            wait_for_workers=workers,
            worker_timeout=self.worker_timeout,
            cluster_class="tasks.kube.start_kube_cluster",
            cluster_kwargs={
                "custom_cluster_spec": resource,
                "namespace": self.namespace,
                "shutdown_on_close": True,
                "resource_timeout": int(self.worker_timeout),
                "startup_timeout": self.worker_timeout,
                # No progress bars in a flow's log.
                "quiet": True,
            },
            adapt_kwargs=adapt,
            performance_report=self.performance_report,
        )

    # Before anything starts ------------------------------------------------------------
    def check_reachable(self) -> None:
        """Fail now, with a clear error, if the scheduler or Kubernetes API cannot be reached."""
        if self.mode == "address":
            from tasks.cluster import check_scheduler

            check_scheduler(str(self.address), timeout=min(self.worker_timeout, 30))
        elif self.mode == "kubernetes":
            from tasks.kube import check_kubernetes_api

            check_kubernetes_api(self.namespace, timeout=min(self.worker_timeout, 30))

    def describe(self) -> str:
        if self.mode == "address":
            return f"existing scheduler {self.address}"
        if self.mode == "kubernetes":
            return f"Kubernetes (namespace {self.namespace}, image {self.image})"
        return "local cluster"


def _first_error(err: ValueError) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first.get("msg", err)).removeprefix("Value error, ")
    return str(err)
