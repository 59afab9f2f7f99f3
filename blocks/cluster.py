"""Where and how big each stage's Dask cluster is: a Prefect Block.

Three modes:

``local``       a LocalCluster of worker processes on this machine (the default);
``address``     an existing Dask scheduler, ``tcp://host:port`` (its workers are its own);
``kubernetes``  a ``DaskCluster`` created through the dask-kubernetes operator for the stage
                and deleted when the stage ends.

Save one with ``DaskClusterConfig(mode="kubernetes", image=...).save("prod")`` and pass
``cluster="prod"`` to a flow (or ``mlops run --cluster prod``).

The block holds fields and their validation only. What acts on it takes it as an argument:
``tasks/runtime/runner.py`` resolves a flow's ``cluster`` parameter to one,
``tasks/runtime/probe.py`` checks that it can be reached and ``tasks/runtime/plan.py`` plans
each stage's cluster from it.
"""

from __future__ import annotations

import os
import re
from typing import Any, ClassVar, Literal, cast

from dask.utils import parse_bytes
from prefect.blocks.core import Block
from pydantic import Field, field_validator, model_validator

from tasks.errors import ClusterError
from tasks.spec import checked_size

ClusterMode = Literal["local", "address", "kubernetes"]
PerformanceReportMode = Literal["cdn", "inline", "off"]
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
    network_policy: bool = Field(
        True,
        description="Create a NetworkPolicy per stage cluster: only its own pods, flow-run "
        "pods and the dask operator reach its scheduler and workers.",
    )
    operator_namespace: str = Field(
        "dask-operator", description="Namespace the dask-kubernetes operator runs in."
    )
    scheduler_service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="How the flow reaches the scheduler (ClusterIP in-cluster)."
    )

    @field_validator("memory_per_worker")
    @classmethod
    def _memory(cls, value: str) -> str:
        return checked_size(value, minimum=2**26, too_small="too little memory for a Dask worker")

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

    @property
    def memory_bytes(self) -> int:
        return int(parse_bytes(self.memory_per_worker))

    def describe(self) -> str:
        if self.mode == "address":
            return f"existing scheduler {self.address}"
        if self.mode == "kubernetes":
            return f"Kubernetes (namespace {self.namespace}, image {self.image})"
        return "local cluster"
