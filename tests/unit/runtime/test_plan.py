"""Stage plans as data: what each stage's runner creates or connects to, for each mode."""

from __future__ import annotations

import pytest

from blocks.cluster import DaskClusterConfig
from tasks.errors import ClusterError
from tasks.runtime.plan import StagePlan, plan_stage
from tasks.runtime.runner import cluster_name

RUN_ID = "0d7f7b8e-3a52-4d6e-9b3c-1f2e3d4c5b6a"


def plan(config: DaskClusterConfig, stage: str, partitions: int | None, cpus: int = 2) -> StagePlan:
    return plan_stage(
        config,
        stage=stage,  # type: ignore[arg-type]
        name=cluster_name(stage, RUN_ID),
        partitions=partitions,
        total_bytes=10 * 2**20 if partitions else 0,
        cpus=cpus,
        api_url="http://127.0.0.1:4200/api",
        labels={"prefect.io/flow-run-id": RUN_ID},
    )


@pytest.mark.timeout(10)
def test_local_plan_follows_the_partition_count_within_the_cores() -> None:
    config = DaskClusterConfig(max_workers=8, partitions_per_worker=1)
    assert plan(config, "ingest", 1, cpus=8).workers == 1
    assert plan(config, "ingest", 3, cpus=8).workers == 3
    # Never more worker processes than cores on one machine.
    assert plan(config, "ingest", 100, cpus=2).workers == 2
    one = plan(config, "validate", 1, cpus=8)
    # One worker gets all the cores as threads.
    assert one.cluster_kwargs["threads_per_worker"] == 8
    assert one.cluster_kwargs["name"] == "mlops-validate-0d7f7b8e3a52"
    assert one.cluster_kwargs["memory_limit"] == "4GiB"
    # One partition runs on a worker in this process; more get worker processes, which
    # are told where the Prefect API is.
    assert one.cluster_kwargs["processes"] is False and "env" not in one.cluster_kwargs
    two = plan(config, "validate", 2, cpus=8).cluster_kwargs
    assert two["processes"] is True
    assert two["env"] == {"PREFECT_API_URL": "http://127.0.0.1:4200/api"}
    assert plan(config, "train", 1, cpus=8).cluster_kwargs["processes"] is True
    with_env = config.model_copy(update={"env": {"AWS_PROFILE": "lake"}})
    assert plan(with_env, "validate", 1, cpus=8).cluster_kwargs["processes"] is True
    # Unknown partition count: planned for max_workers (then released if adaptive).
    assert plan(config, "ingest", None, cpus=8).workers == 8


@pytest.mark.timeout(10)
def test_local_training_is_packed_into_one_worker_with_every_core_and_the_sized_memory() -> None:
    config = DaskClusterConfig(max_workers=4, memory_per_worker="2GiB")
    packed = plan(config, "train", 8, cpus=4)
    assert packed.workers == packed.wait_for_workers == 1
    assert packed.cluster_kwargs["n_workers"] == 1
    assert packed.cluster_kwargs["threads_per_worker"] == 4
    assert packed.cluster_kwargs["memory_limit"] == 4 * 2**31
    # The other stages, and training with packing off, keep one process per sized worker.
    assert plan(config, "validate", 8, cpus=4).cluster_kwargs["n_workers"] == 4
    spread = plan(config.model_copy(update={"pack_local_training": False}), "train", 8, cpus=4)
    assert spread.cluster_kwargs["n_workers"] == 4
    assert spread.cluster_kwargs["threads_per_worker"] == 1
    # Elsewhere the workers are separate machines: training stays distributed.
    kube = plan(config.model_copy(update={"mode": "kubernetes"}), "train", 8, cpus=4)
    assert kube.workers == 4


@pytest.mark.timeout(10)
def test_only_ingest_and_validate_are_adaptive() -> None:
    config = DaskClusterConfig(min_workers=1, max_workers=4)
    for stage in ("ingest", "validate"):
        assert plan(config, stage, 8, cpus=4).adapt_kwargs == {"minimum": 1, "maximum": 4}
    for stage in ("train", "promote"):
        fixed = plan(config.model_copy(update={"pack_local_training": False}), stage, 8, cpus=4)
        assert fixed.adapt_kwargs == {}
        # XGBoost is not elastic: training waits for every planned worker.
        assert fixed.wait_for_workers == fixed.workers == 4
    assert plan(config.model_copy(update={"adaptive": False}), "ingest", 8, 4).adapt_kwargs == {}


@pytest.mark.timeout(10)
def test_address_plan_connects_and_creates_nothing() -> None:
    config = DaskClusterConfig(mode="address", address="tcp://10.0.0.5:8786", min_workers=2)
    stage = plan(config, "train", 8)
    assert stage.address == "tcp://10.0.0.5:8786"
    assert stage.cluster_kwargs == {} and stage.adapt_kwargs == {}
    assert stage.wait_for_workers == 2


@pytest.mark.timeout(10)
def test_kubernetes_plan_hands_a_cluster_spec_to_kubecluster() -> None:
    config = DaskClusterConfig(mode="kubernetes", max_workers=20, partitions_per_worker=2)
    stage = plan(config, "train", 30)
    assert stage.mode == "kubernetes"
    # Not capped by this machine's cores: the cluster is elsewhere.
    assert stage.workers == 15
    kwargs = stage.cluster_kwargs
    assert kwargs["namespace"] == "mlops" and kwargs["shutdown_on_close"] is True
    resource = kwargs["custom_cluster_spec"]
    assert resource["metadata"]["name"] == "mlops-train-0d7f7b8e3a52"
    assert resource["spec"]["worker"]["replicas"] == 15


def test_performance_reports_default_to_cdn_and_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLOPS_DASK_PERFORMANCE_REPORT", raising=False)
    assert plan(DaskClusterConfig(), "train", 4).performance_report == "cdn"
    monkeypatch.setenv("MLOPS_DASK_PERFORMANCE_REPORT", "Inline")
    assert plan(DaskClusterConfig(), "train", 4).performance_report == "inline"
    # A block's own setting wins over the environment.
    assert plan(DaskClusterConfig(performance_report="off"), "ingest", 4).performance_report == (
        "off"
    )
    monkeypatch.setenv("MLOPS_DASK_PERFORMANCE_REPORT", "sometimes")
    with pytest.raises(ClusterError, match="must be cdn, inline or off, not 'sometimes'"):
        DaskClusterConfig()
