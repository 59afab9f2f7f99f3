"""Shared fixtures: generated data, spec variants and one Prefect API for the whole session."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import DEMO_SPEC
from tests.support.processes import forkserver_pid, free_port, wait_for_port
from tests.support.specs import demo_spec_with

# Before anything imports Prefect: keep its state out of ~/.prefect and .prefect/, give the
# temporary API server time to migrate on a slow machine, and keep telemetry off the network.
# One home per test process (each xdist worker too): a flow that fails persists its error in
# the home's storage, which tests of where results go must not see from another worker.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(
    prefix=f"mlops-test-prefect-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-"
)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
# A Dask performance report costs the scheduler about a second per stage, and the suite
# runs hundreds of stages: only the tests of the reports turn them on (monkeypatch).
os.environ.setdefault("MLOPS_DASK_PERFORMANCE_REPORT", "off")
# The session's temporary API records hundreds of flow runs; no test reads their logs from
# it, nor has it run automations (those are the deployment server's, which keeps all of
# this on: tests/integration/conftest.py). Off, it spends about a sixth less CPU.
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect API (own SQLite database) for every flow test in the session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session", autouse=True)
def worker_imports() -> None:
    """This test process's forkserver, started first with every stage's worker imports: the
    session runs every stage many times, and the first stage started would preload only
    its own stage's. It imports in the background while the first tests run."""
    from tasks.runtime.runner import WORKER_IMPORTS, start_forkserver

    start_forkserver(WORKER_IMPORTS)


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four clean landing files (CSV, gzip CSV, Parquet, CSV), 6,000 rows."""
    from tasks.demo_data import write_demo_data

    out = tmp_path_factory.mktemp("landing-clean")
    write_demo_data(str(out), rows=6000, files=4, seed=11)
    return out


@pytest.fixture(scope="session")
def defect_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight landing files, four of them damaged (one of each defect)."""
    from tasks.demo_data import write_demo_data

    out = tmp_path_factory.mktemp("landing-defects")
    write_demo_data(str(out), rows=8000, files=8, seed=12, defects=True)
    return out


@pytest.fixture
def lake(tmp_path: Path) -> str:
    return str(tmp_path / "lake")


@pytest.fixture
def demo_spec() -> str:
    return str(DEMO_SPEC)


@pytest.fixture
def spec_variant(tmp_path: Path) -> Callable[..., str]:
    """Write the demo spec with some top-level or nested fields changed; return its path."""

    def make(name: str = "variant.yaml", **changes: Any) -> str:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(demo_spec_with(**changes), sort_keys=False))
        return str(path)

    return make


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """A real two-process LocalCluster for tests of the distributed functions."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
        client.as_current(),
    ):
        yield client


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server process; the standard AWS variables point every process at it.

    Set in os.environ (not per-test) because the Dask workers that read and write the lake
    are separate processes that inherit the environment.
    """
    import shutil
    import subprocess
    import sys

    import fsspec

    port = free_port()
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        wait_for_port(port, proc, what="moto_server")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        # A cached S3 filesystem would keep talking to the server that is gone.
        fsspec.get_filesystem_class("s3").clear_instance_cache()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _leftover_processes(ignore: set[int], timeout: float = 15) -> list[str]:
    """Child processes of this test run (but ``ignore``) still alive ``timeout`` s after the
    last test."""
    import time

    import psutil

    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for child in psutil.Process().children(recursive=True):
            try:
                if child.pid not in ignore and child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{child.pid}: {' '.join(child.cmdline())[:160]}")
            except psutil.Error:
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any test left a process behind (a Dask scheduler or worker, a server):
    every cluster and server a test starts must be gone when its fixture or stage ends."""
    import multiprocessing.resource_tracker

    if session.config.pluginmanager.hasplugin("dsession"):
        return  # the xdist controller: each worker checks its own children

    # Its resource tracker and forkserver (local Dask workers are forked from it) live as
    # long as this interpreter, by design.
    tracker = getattr(multiprocessing.resource_tracker, "_resource_tracker", None)
    lifelong = {getattr(tracker, "_pid", None), forkserver_pid()} - {None}
    leftover = _leftover_processes(lifelong)
    if leftover:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("processes left behind by the tests:", red=True)
            for line in leftover:
                reporter.write_line(f"  {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# Scheduling on xdist workers -------------------------------------------------------------------
# Modules that share an expensive session fixture run on one worker: the deployment tests'
# Prefect server, deployments and worker (~40 s to set up) serve both of these.
SHARED_SCOPES = {
    "tests/integration/test_automations.py": "deployment-server",
    "tests/integration/test_deployments.py": "deployment-server",
}


def scope_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its module, or the group sharing its server."""
    module = nodeid.split("::", 1)[0]
    return SHARED_SCOPES.get(module, module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest work first: the deployment-server group, then the modules of end-to-end runs,
    then the quick ones that fill in at the end (whole modules go to one worker each; a long
    one started last would leave the other worker idle while it runs)."""

    slow = {scope_of(i.nodeid) for i in items if i.get_closest_marker("slow")}
    first = {scope: n for n, scope in enumerate(dict.fromkeys(scope_of(i.nodeid) for i in items))}

    def weight(item: pytest.Item) -> tuple[int, int]:
        # Per work unit, so a unit's tests stay together and in their order.
        scope = scope_of(item.nodeid)
        rank = 0 if scope == "deployment-server" else 1 if scope in slow else 2
        return (rank, first[scope])

    items.sort(key=weight)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadFileScheduling

    class SharedScopeScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return SharedScopeScheduling(config, log)
