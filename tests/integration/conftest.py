"""Fixtures of the end-to-end tests: the session's temporary Prefect API, and for the
deployment tests one real ``prefect server start`` with the deployments, a process worker,
the webhook gateway and an alert receiver, shared by test_deployments and test_automations.

That server is set up as the README's deployment is: on PostgreSQL, with basic auth, every
client (CLI, worker, flow runs, gateway) holding the credentials."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tasks.demo_data import write_demo_data
from tests.support.postgres import binaries, postgres
from tests.support.prefect_server import (
    BIN,
    LATE_AFTER_MINUTES,
    SECRET,
    Receiver,
    Server,
    checkout,
    receiver,
)
from tests.support.processes import free_port, stop_group, wait_for_http


@pytest.fixture(autouse=True)
def _prefect(prefect_api: str) -> str:
    """Every end-to-end test talks to the session's temporary Prefect API."""
    return prefect_api


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    """The deployment server's PostgreSQL (its SQLAlchemy URL); empty where PostgreSQL is
    not installed outside CI: the server then keeps Prefect's SQLite default."""
    if binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is missing: .ci/run installs Debian's postgresql")
        yield ""
        return
    with postgres() as url:
        yield url


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Server]:
    """A real Prefect server on ``database`` with basic auth, stopped when the session ends."""
    root = tmp_path_factory.mktemp("deploy")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    auth = f"mlops:{secrets.token_hex(16)}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_API_URL": api,
        # Every client of the server: the CLI, the worker, its flow runs and their Dask
        # workers, the gateway's event client.
        "PREFECT_API_AUTH_STRING": auth,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_TIMEOUT": "30",
        # Poll often: the tests wait for runs the worker picks up.
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "2",
        "MLOPS_WEBHOOK_SECRET": SECRET,
        # The UI calls the API at this address (Prefect's default is port 4200).
        "PREFECT_UI_API_URL": api,
        "DASK_LOGGING__DISTRIBUTED": "warning",
        # As deployed: run logs go to the server, whose automations run (tests/conftest.py
        # turns these off for the session's temporary API only).
        "PREFECT_LOGGING_TO_API_ENABLED": "true",
        "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "true",
        # A run nobody picks up is marked Late after 3 s (Prefect's default is 15 s).
        "PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS": "3",
        "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "1",
    }
    logs = root / "logs"
    logs.mkdir()
    found = Server(
        api=api,
        ui=f"http://127.0.0.1:{port}",
        env=env,
        checkout=checkout(root / "checkout"),
        logs=logs,
        auth=auth,
        database=database,
    )
    # The checkout's demo spec feeds drifted labeled batches back into training, so the loop
    # test sees scored data reach the retraining (only a drift alert acts on it).
    spec = found.checkout / "datasets" / "demo.yaml"
    data = yaml.safe_load(spec.read_text())
    data.setdefault("monitoring", {})["retrain_with_scored"] = True
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    process = found.start(
        "server",
        str(BIN / "prefect"),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env={
            "PREFECT_SERVER_API_AUTH_STRING": auth,
            **({"PREFECT_SERVER_DATABASE_CONNECTION_URL": database} if database else {}),
        },
    )
    try:
        wait_for_http(f"{api}/health", process, what="prefect server", timeout=180)
        yield found
    finally:
        stop_group(process)


@pytest.fixture(scope="session")
def alerts() -> Iterator[Receiver]:
    """Where the alert automations send: an HTTP receiver this test process runs."""
    with receiver() as found:
        yield found


@pytest.fixture(scope="session")
def deployed(server: Server, alerts: Receiver) -> Iterator[Server]:
    """``mlops setup --notify``, ``prefect deploy --all`` and a process worker on
    ``local-process``."""
    first = server.run(
        str(BIN / "mlops"), "setup", "--notify", alerts.url, "--late-after", LATE_AFTER_MINUTES
    )
    assert first.returncode == 0, first.stderr[-3000:]
    deploy = server.run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
    assert deploy.returncode == 0, (deploy.stdout + deploy.stderr)[-3000:]
    worker = server.start(
        "worker", str(BIN / "prefect"), "worker", "start", "--pool", "local-process"
    )
    try:
        yield server
    finally:
        stop_group(worker)


@pytest.fixture(scope="session")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy-landing")
    write_demo_data(str(out), rows=3000, files=3, seed=5)
    return out


@pytest.fixture(scope="session")
def scoring_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the gateway maps to scoring files of ``customers``."""
    return tmp_path_factory.mktemp("deploy-scoring")


@pytest.fixture(scope="session")
def gateway(deployed: Server, scoring_root: Path, landing: Path) -> Iterator[str]:
    """The gateway as the README starts it: the secret from the block `mlops setup` saved,
    the scoring folder mapped, and only the test's landing and scoring folders allowed."""
    port = free_port()
    command = [
        *(str(BIN / "mlops"), "webhook", "serve", "--port", str(port)),
        *("--scoring", f"{scoring_root}/=customers"),
        *("--allow-source", str(landing), "--allow-source", f"{scoring_root}/"),
    ]
    without_env = replace(deployed, env={**deployed.env, "MLOPS_WEBHOOK_SECRET": ""})
    process = without_env.start("webhook", *command, "--secret-block", "mlops-webhook-secret")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/healthz", process, what="webhook gateway", timeout=60)
        yield url
    finally:
        stop_group(process)
