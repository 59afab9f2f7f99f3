"""Where stages run: an existing scheduler with worker processes over TCP, and cluster lifetimes.

The ``dask scheduler`` and two ``dask worker`` processes here are separate OS processes
started from the command line, exactly as on a machine that hosts a shared Dask cluster.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest
from distributed import Client

from flows.ingest import ingest_flow
from flows.pipeline import ml_pipeline
from tasks.errors import ClusterError, ValidationFailed
from tests.support.paths import DEMO_SPEC
from tests.support.processes import dask_worker_processes, free_port

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


def dask_command(*args: str) -> list[str]:
    """``dask <args>`` from this interpreter's environment (the venv's ``dask`` script)."""
    return [str(Path(sys.executable).parent / "dask"), *args]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Workers first, then the scheduler (a worker whose scheduler is gone keeps retrying)."""
    processes = processes[::-1]
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            # A nanny-less worker shuts down in a second or two; one that lingers (retrying
            # a scheduler that is gone) is killed rather than waited for.
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def dask_processes(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Iterator[str]:
    """A scheduler and two single-threaded workers as separate processes; yields the address."""
    tmp_path = tmp_path_factory.mktemp("dask-processes")
    # Started as a user would, knowing nothing of Prefect: each task run brings the flow's
    # API with it.
    env = {
        **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
        "DASK_LOGGING__DISTRIBUTED": "warning",
    }
    address = f"tcp://127.0.0.1:{free_port()}"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            subprocess.Popen(
                dask_command(
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    address.rsplit(":", 1)[1],
                    "--no-dashboard",
                ),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(logs / "scheduler.log").open("wb"),
            )
        )
        for name in ("worker-a", "worker-b"):
            processes.append(
                subprocess.Popen(
                    dask_command(
                        "worker",
                        address,
                        "--name",
                        name,
                        "--nthreads",
                        "1",
                        "--no-nanny",
                        "--no-dashboard",
                        "--memory-limit",
                        "2GiB",
                        "--local-directory",
                        str(tmp_path / name),
                    ),
                    env=env,
                    cwd=tmp_path,
                    stdout=subprocess.DEVNULL,
                    stderr=(logs / f"{name}.log").open("wb"),
                )
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                with Client(address, timeout=5, set_as_default=False) as client:
                    client.wait_for_workers(2, timeout=max(1, deadline - time.monotonic()))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield address
    finally:
        stop(processes)
        assert all(p.poll() is not None for p in processes)


def executed_per_worker(address: str) -> dict[str, int]:
    with Client(address, set_as_default=False) as client:
        counts = client.run(lambda dask_worker: dask_worker.state.executed_count)
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
    return {names[a]: int(n) for a, n in counts.items()}


def test_whole_pipeline_on_an_existing_scheduler_with_worker_processes(
    dask_processes: str,
    spec_variant: Callable[..., str],
    demo_source: Path,
    lake: str,
    prefect_api: str,
) -> None:
    started = datetime.now(UTC).isoformat()
    # A partition per file: work for both workers.
    spec = spec_variant(ingest={"partition_rows": 1500})
    result = ml_pipeline(spec=spec, source=str(demo_source), lake=lake, cluster=dask_processes)
    assert result.promoted and result.files_accepted == 4 and result.partitions_accepted == 4
    assert result.metrics["roc_auc"] > 0.8
    # Both worker processes did part of the work: the stages really ran over TCP on them.
    executed = executed_per_worker(dask_processes)
    assert set(executed) == {"worker-a", "worker-b"}
    assert all(n > 0 for n in executed.values()), executed
    # The existing cluster is not ours: it is still there, with both workers, afterwards.
    with Client(dask_processes, set_as_default=False) as client:
        assert len(client.scheduler_info()["workers"]) == 2
    assert completed_task_runs(prefect_api, since=started, prefix="validate-") >= 4


def completed_task_runs(api: str, *, since: str, prefix: str) -> int:
    runs = httpx.post(
        f"{api}/task_runs/filter",
        json={
            "task_runs": {
                "start_time": {"after_": since},
                "state": {"type": {"any_": ["COMPLETED"]}},
                "name": {"like_": prefix},
            },
            "limit": 200,
        },
        timeout=30,
    ).json()
    return len(runs)


def test_a_stage_flow_called_alone_runs_where_its_cluster_parameter_says(
    dask_processes: str, spec_variant: Callable[..., str], demo_source: Path, lake: str
) -> None:
    before = sum(executed_per_worker(dask_processes).values())
    # Partitions of 64 KiB: each file is a split (an ingest task) of its own.
    spec = spec_variant(ingest={"partition_size": "64KiB"})
    result = ingest_flow(spec=spec, source=str(demo_source), lake=lake, cluster=dask_processes)
    assert result.files_read == 4 and len(result.new_partitions) >= 4
    # One ingest task per split ran on the existing cluster's workers.
    assert sum(executed_per_worker(dask_processes).values()) - before >= 4


def wait_gone(pids: set[int], timeout: float = 30) -> set[int]:
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {
            p
            for p in alive
            if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        }
        time.sleep(0.5)
    return alive


def test_a_failing_stage_leaves_no_cluster_processes(
    demo_spec: str, defect_source: Path, spec_variant, lake: str
) -> None:
    before = dask_worker_processes()
    strict = spec_variant(validation={"min_accepted_fraction": 1.0})
    with pytest.raises(ValidationFailed):
        ml_pipeline(spec=strict, source=str(defect_source), lake=lake)
    assert wait_gone(dask_worker_processes() - before) == set()


def test_unreachable_scheduler_fails_before_any_work(
    demo_spec: str, demo_source: Path, lake: str
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {address}"):
        ml_pipeline(spec=demo_spec, source=str(demo_source), lake=lake, cluster=address)
    assert not Path(lake).exists()


def test_kubernetes_without_an_api_fails_before_any_work(
    demo_spec: str, demo_source: Path, lake: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ClusterError, match="needs a reachable Kubernetes API"):
        ml_pipeline(spec=demo_spec, source=str(demo_source), lake=lake, cluster="kubernetes")
    assert not Path(lake).exists()


def test_unknown_cluster_name_is_a_clear_error(
    demo_spec: str, demo_source: Path, lake: str
) -> None:
    with pytest.raises(ClusterError, match="cluster 'nightly-gpu' is not 'local', 'kubernetes'"):
        ml_pipeline(spec=demo_spec, source=str(demo_source), lake=lake, cluster="nightly-gpu")
    assert not Path(lake).exists()


def test_a_saved_cluster_block_is_used_by_name(
    demo_spec: str, demo_source: Path, lake: str, caplog: pytest.LogCaptureFixture
) -> None:
    from blocks.cluster import DaskClusterConfig

    DaskClusterConfig(max_workers=1, adaptive=False).save("one-worker", overwrite=True)
    caplog.set_level("INFO")
    result = ingest_flow(spec=demo_spec, source=str(demo_source), lake=lake, cluster="one-worker")
    assert len(result.version.files) == 4
    # The stage's own cluster parameter named the block; the block allows one worker, here
    # for the one split of the four small files.
    planned = [r.getMessage() for r in caplog.records if " worker(s) for " in r.getMessage()]
    assert planned == ["Stage ingest: local cluster, 1 worker(s) for 1 partition(s)"]


def servers_under(address: str) -> list[str]:
    """Prefect servers (uvicorn processes) started under the cluster's worker processes."""
    with Client(address, set_as_default=False) as client:
        workers = client.run(os.getpid)
    found = []
    for pid in workers.values():
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                command = " ".join(child.cmdline())
                if "uvicorn" in command or "prefect" in command:
                    found.append(command)
    return found


def test_the_embedded_api_reaches_existing_workers_without_servers_of_their_own(
    dask_processes: str, demo_source: Path, tmp_path: Path
) -> None:
    """`mlops run --cluster tcp://...` on the embedded default (no PREFECT_API_URL anywhere):
    each task run takes the flow's temporary API along, so no worker starts one."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    command = [
        *(str(Path(sys.executable).parent / "mlops"), "run", "--spec", str(DEMO_SPEC)),
        *("--source", str(demo_source), "--lake", str(tmp_path / "lake")),
        *("--cluster", dask_processes, "--no-progress"),
    ]
    run = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seen: list[str] = []
    while run.poll() is None:
        seen += servers_under(dask_processes)
        time.sleep(0.5)
    err = run.stderr.read() if run.stderr else ""
    assert run.returncode == 0, err[-3000:]
    assert seen == [] and servers_under(dask_processes) == []
    assert "Finished in state Completed" in err
    # The command started the temporary API first (deployments/early_api.py) and handed it
    # to Prefect; the flow used that one instead of starting its own.
    assert err.count("Started temporary server") == 1, err[-3000:]
    assert "Starting temporary server" not in err, err[-3000:]
