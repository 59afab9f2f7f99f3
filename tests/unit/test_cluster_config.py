"""The cluster config block: validation, resolution of the ``cluster`` parameter, stage plans."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from blocks.cluster import DaskClusterConfig
from tasks.cluster import check_scheduler, cluster_name
from tasks.errors import ClusterError

RUN_ID = "0d7f7b8e-3a52-4d6e-9b3c-1f2e3d4c5b6a"


def plan(config: DaskClusterConfig, stage: str, partitions: int | None, cpus: int = 2):  # type: ignore[no-untyped-def]
    return config.plan(
        stage=stage,  # type: ignore[arg-type]
        name=cluster_name(stage, RUN_ID),
        partitions=partitions,
        total_bytes=10 * 2**20 if partitions else 0,
        cpus=cpus,
        api_url="http://127.0.0.1:4200/api",
        labels={"prefect.io/flow-run-id": RUN_ID},
    )


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (None, "local"),
        ("", "local"),
        ("local", "local"),
        (" local ", "local"),
        ("kubernetes", "kubernetes"),
        ("tcp://127.0.0.1:8786", "address"),
        ("tls://scheduler.dask.svc:8786", "address"),
    ],
)
def test_cluster_parameter_resolves(value: str | None, mode: str) -> None:
    config = DaskClusterConfig.resolve(value)
    assert config.mode == mode
    if mode == "address":
        assert config.address == value


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tcp://no-port", "is not a scheduler address like tcp://host:8786"),
        ("http://host:8786", "is not a scheduler address"),
        ("tcp://host:8786/path", "is not a scheduler address"),
    ],
)
def test_bad_scheduler_address_is_a_clear_error(value: str, message: str) -> None:
    with pytest.raises(ClusterError, match=message) as info:
        DaskClusterConfig.resolve(value)
    assert value in str(info.value)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_workers": 5, "max_workers": 2}, "min_workers \\(5\\) is more than max_workers"),
        ({"memory_per_worker": "lots"}, "'lots' is not a size"),
        ({"memory_per_worker": "1MB"}, "too little memory"),
        ({"mode": "address"}, "mode 'address' needs address"),
        ({"address": "tcp://h:1"}, "only used in mode 'address'"),
        ({"mode": "kubernetes", "namespace": "Not_Valid"}, "not a valid Kubernetes namespace"),
        ({"mode": "kubernetes", "image": " "}, "needs the image"),
        ({"mode": "cloud"}, "Input should be 'local', 'address' or 'kubernetes'"),
        ({"max_workers": 0}, "greater than or equal to 1"),
    ],
)
def test_invalid_config_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DaskClusterConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.timeout(30)
def test_unreachable_scheduler_fails_fast_with_the_address() -> None:
    # A port nothing listens on: bind, read the port, close.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {address}"):
        check_scheduler(address, timeout=2)


@pytest.mark.timeout(10)
def test_cluster_names_are_unique_per_flow_run_and_valid_for_kubernetes() -> None:
    from dask_kubernetes.operator.validation import validate_cluster_name

    names = {cluster_name("validate", RUN_ID), cluster_name("validate", RUN_ID.replace("0", "1"))}
    assert len(names) == 2
    assert cluster_name("train", RUN_ID) == "mlops-train-0d7f7b8e3a52"
    for stage in ("ingest", "validate", "train", "promote"):
        validate_cluster_name(cluster_name(stage, RUN_ID))
        validate_cluster_name(cluster_name(stage, None))


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
    assert stage.cluster_class is None and stage.adapt_kwargs == {}
    assert stage.wait_for_workers == 2


@pytest.mark.timeout(10)
def test_kubernetes_plan_hands_a_cluster_spec_to_kubecluster() -> None:
    config = DaskClusterConfig(mode="kubernetes", max_workers=20, partitions_per_worker=2)
    stage = plan(config, "train", 30)
    assert stage.cluster_class == "tasks.kube.start_kube_cluster"
    # Not capped by this machine's cores: the cluster is elsewhere.
    assert stage.workers == 15
    kwargs = stage.cluster_kwargs
    assert kwargs["namespace"] == "mlops" and kwargs["shutdown_on_close"] is True
    resource = kwargs["custom_cluster_spec"]
    assert resource["metadata"]["name"] == "mlops-train-0d7f7b8e3a52"
    assert resource["spec"]["worker"]["replicas"] == 15


@pytest.mark.timeout(30)
def test_a_port_that_is_not_a_dask_scheduler_is_a_clear_error() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        message = f"no Dask scheduler answered at {address}: no answer within 2 s"
        with pytest.raises(ClusterError, match=message):
            check_scheduler(address, timeout=2)


@pytest.mark.timeout(60)
def test_a_running_scheduler_passes_the_check(dask_client) -> None:  # type: ignore[no-untyped-def]
    check_scheduler(dask_client.scheduler.address, timeout=10)


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
