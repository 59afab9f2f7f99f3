"""The stage task runner on real clusters: what it creates, waits for, and closes."""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest
from distributed.gc import _gc_diagnosis

from blocks.cluster import DaskClusterConfig
from tasks.errors import ClusterError
from tasks.runtime.runner import (
    WORKER_IMPORTS,
    StageClosings,
    StageTaskRunner,
    closing_in_background,
    cluster_config,
    cluster_name,
    has_forkserver,
    start_forkserver,
)

RUN_ID = "0d7f7b8e-3a52-4d6e-9b3c-1f2e3d4c5b6a"


@pytest.mark.timeout(120)
def test_a_local_stage_cluster_is_sized_named_and_closed() -> None:
    runner = StageTaskRunner(
        stage="train",
        cluster=DaskClusterConfig(
            max_workers=2,
            partitions_per_worker=1,
            threads_per_worker=1,
            pack_local_training=False,
        ),
        partitions=2,
        total_bytes=1000,
    )
    with runner:
        assert runner.plan is None  # nothing is created before the stage needs it
        client = runner.ready_client()
        assert runner.plan is not None and runner.plan.workers == 2
        info = client.scheduler_info()
        assert len(info["workers"]) == 2
        assert runner._cluster is not None and runner._cluster.name.startswith("mlops-train-")
        worker_pids = set(client.run(lambda: __import__("os").getpid()).values())
        assert all(psutil.pid_exists(pid) for pid in worker_pids)
        # The in-process scheduler's gc diagnosis is off: its callback printed tracebacks
        # when Prefect's timeout alarm landed in it (a run of 1,000 partitions).
        assert not _gc_diagnosis.enabled
        assert not [cb for cb in gc.callbacks if "GCDiagnosis" in repr(cb)]
    # Closed with the stage: its worker processes are gone.
    assert not [p for p in worker_pids if psutil.pid_exists(p)]


@pytest.mark.timeout(120)
def test_training_waits_for_its_workers_and_says_when_they_do_not_come(dask_client) -> None:  # type: ignore[no-untyped-def]
    address = dask_client.scheduler.address
    enough = DaskClusterConfig(mode="address", address=address, min_workers=2)
    with StageTaskRunner(stage="train", cluster=enough) as runner:
        assert len(runner.ready_client().scheduler_info()["workers"]) == 2
    # The session's cluster has two workers; a stage that needs three fails with the count.
    too_many = DaskClusterConfig(
        mode="address", address=address, min_workers=3, max_workers=3, worker_timeout=3
    )
    with (
        StageTaskRunner(stage="train", cluster=too_many) as runner,
        pytest.raises(ClusterError, match=r"only 2 of 3 Dask worker\(s\) joined"),
    ):
        runner.ready_client()
    # Connecting to an existing cluster never closes it.
    assert len(dask_client.scheduler_info()["workers"]) == 2


@pytest.mark.timeout(60)
def test_a_stage_not_started_yet_is_narrowed_to_the_work_left() -> None:
    runner = StageTaskRunner(stage="ingest", cluster="local", partitions=16, total_bytes=1600)
    runner.narrow(1)  # fifteen were cached: one file to ingest
    assert (runner.partitions, runner.total_bytes) == (1, 100)
    runner.narrow(4)  # never widened
    assert (runner.partitions, runner.total_bytes) == (1, 100)
    # A stage flow run alone does not know its partitions until it looks: it takes the count.
    unsized = StageTaskRunner(stage="ingest", cluster="local")
    unsized.narrow(3)
    assert (unsized.partitions, unsized.total_bytes) == (3, None)


@pytest.mark.timeout(60)
def test_duplicates_keep_the_stage_and_sizing() -> None:
    # Prefect duplicates the flow's runner for every run.
    runner = StageTaskRunner(stage="validate", cluster="local", partitions=3, total_bytes=9)
    copy = runner.duplicate()
    assert copy == runner and copy is not runner
    assert (copy.stage, copy.cluster, copy.partitions, copy.total_bytes) == (
        "validate",
        "local",
        3,
        9,
    )


@pytest.mark.timeout(120)
def test_ingest_and_validate_clusters_are_adaptive_within_the_plan() -> None:
    config = DaskClusterConfig(max_workers=2, partitions_per_worker=1, threads_per_worker=1)
    with StageTaskRunner(stage="ingest", cluster=config, partitions=2) as runner:
        runner.client  # noqa: B018 - creating the client creates the cluster
        adaptive = runner._cluster._adaptive  # type: ignore[union-attr]
        assert adaptive is not None
        assert (adaptive.minimum, adaptive.maximum) == (1, 2)
    with StageTaskRunner(stage="train", cluster=config, partitions=2) as runner:
        runner.client  # noqa: B018
        assert getattr(runner._cluster, "_adaptive", None) is None


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
    config = cluster_config(value)
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
        cluster_config(value)
    assert value in str(info.value)


@pytest.mark.timeout(10)
def test_cluster_names_are_unique_per_flow_run_and_valid_for_kubernetes() -> None:
    from dask_kubernetes.operator.validation import validate_cluster_name

    names = {cluster_name("validate", RUN_ID), cluster_name("validate", RUN_ID.replace("0", "1"))}
    assert len(names) == 2
    assert cluster_name("train", RUN_ID) == "mlops-train-0d7f7b8e3a52"
    for stage in ("ingest", "validate", "train", "promote"):
        validate_cluster_name(cluster_name(stage, RUN_ID))
        validate_cluster_name(cluster_name(stage, None))


@pytest.mark.timeout(120)
def test_local_workers_see_the_environment_as_it_is_when_their_stage_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers are forked from a forkserver started by an earlier stage, which imported
    Prefect, GX and XGBoost once: a worker has them before its first task, and still sees
    what this process's environment holds now (e.g. credentials set since), Prefect's
    settings included (not the forkserver's, read at its start)."""
    from prefect.settings import PREFECT_API_URL

    start_forkserver(WORKER_IMPORTS)  # a no-op where an earlier test started it

    def in_worker() -> tuple[str | None, list[str], str]:
        # Read in the worker (a bound os.environ.get would carry this process's copy).
        return (
            os.environ.get("MLOPS_TEST_MARK"),
            sorted(m for m in WORKER_IMPORTS["score"] if m in sys.modules),
            str(PREFECT_API_URL.value()),
        )

    for value, port in (("first", 9), ("second", 10)):
        api = f"http://127.0.0.1:{port}/api"
        monkeypatch.setenv("MLOPS_TEST_MARK", value)
        monkeypatch.setenv("PREFECT_API_URL", api)
        runner = StageTaskRunner(
            stage="score",
            cluster=DaskClusterConfig(max_workers=1, adaptive=False),
            partitions=2,
        )
        with runner:
            seen = runner.client.run(in_worker)
        assert list(seen.values()) == [(value, sorted(WORKER_IMPORTS["score"]), api)]


@pytest.mark.timeout(120)
def test_a_stage_in_a_run_closes_its_cluster_in_the_background_and_the_run_waits() -> None:
    """Inside ``closing_in_background`` the stage's exit hands its cluster to a thread; the
    block ends only once the workers are gone."""
    with closing_in_background() as closings:
        runner = StageTaskRunner(
            stage="ingest",
            cluster=DaskClusterConfig(max_workers=1, threads_per_worker=1),
            partitions=2,
            total_bytes=1000,
            closings=closings,
        )
        assert runner.duplicate().closings is closings  # Prefect runs the flow on a copy
        with runner:
            client = runner.ready_client()
            worker_pids = set(client.run(lambda: __import__("os").getpid()).values())
        # The stage is left at once: the cluster is handed to a closing thread.
        assert [t.name for t in closings._threads] == ["mlops-close-ingest"]
    assert not [p for p in worker_pids if psutil.pid_exists(p)]
    # Task runs carry the runner to workers: what arrives there is an empty stand-in.
    assert isinstance(pickle.loads(pickle.dumps(closings)), StageClosings)


@pytest.mark.timeout(60)
def test_a_cluster_that_fails_to_close_fails_the_run_after_every_other_closed() -> None:
    class Broken:
        def __enter__(self) -> Broken:
            return self

        def __exit__(self, *exc: object) -> None:
            raise RuntimeError("scheduler gone")

    closed: list[str] = []
    with pytest.raises(RuntimeError, match="scheduler gone"), closing_in_background() as closings:
        broken, fine = ExitStack(), ExitStack()
        broken.enter_context(Broken())
        fine.callback(closed.append, "validate")
        closings.close_later(broken, stage="ingest")
        closings.close_later(fine, stage="validate")
    assert closed == ["validate"]
    # When the block itself fails, its own error is the one raised.
    with pytest.raises(ValueError, match="bad partition"), closing_in_background() as closings:
        broken = ExitStack()
        broken.enter_context(Broken())
        closings.close_later(broken, stage="ingest")
        raise ValueError("bad partition")


# Run in a fresh interpreter: this test session's forkserver is already running.
_EARLY_FORKSERVER = """
import multiprocessing, sys
from multiprocessing import forkserver
from blocks.cluster import DaskClusterConfig
from tasks.runtime.runner import start_forkserver_early

def preloaded():
    return sorted(m for m in ("great_expectations", "prefect", "xgboost") if m in sys.modules)

def running():
    return forkserver._forkserver._forkserver_pid is not None

if __name__ == "__main__":
    new = int(sys.argv[1])
    remote = DaskClusterConfig(mode="address", address="tcp://127.0.0.1:9")
    start_forkserver_early(remote, new_partitions=new)
    start_forkserver_early(DaskClusterConfig(), new_partitions=0)
    print(running())
    start_forkserver_early(DaskClusterConfig(), new_partitions=new)
    with multiprocessing.get_context("forkserver").Pool(1) as pool:
        print(pool.apply(preloaded))
"""


@pytest.mark.skipif(not has_forkserver(), reason="no forkserver on this platform")
@pytest.mark.timeout(120)
def test_a_run_with_new_data_starts_the_forkserver_early_with_what_follows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``start_forkserver_early`` (called by the pipeline once ingest is done) starts
    nothing for a cluster this process does not create or a run without new data. With one
    new partition (validated in this process) the forkserver imports training's libraries,
    with more also validation's, so workers forked from it have them before their first
    task."""
    script = tmp_path / "early.py"
    script.write_text(_EARLY_FORKSERVER)
    root = Path(__file__).resolve().parents[3]
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    for new, imported in (
        (1, "['prefect', 'xgboost']"),
        (2, "['great_expectations', 'prefect', 'xgboost']"),
    ):
        done = subprocess.run(
            [sys.executable, str(script), str(new)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": path},
            capture_output=True,
            text=True,
            timeout=110,
            check=True,
        )
        assert done.stdout.split("\n")[:2] == ["False", imported]
