"""Deployments against a real ``prefect server start``, a real process worker and the webhook
gateway: ``mlops setup``, ``prefect deploy --all`` from prefect.yaml, runs started by
``prefect deployment run``, by a signed webhook (through the deployment trigger) and from the
Prefect UI in headless Chromium.

Everything runs from a copy of the repository (the "checkout"), so the deployments' relative
paths (``.mlops/lake``) resolve there and not in the developer's own checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from blocks.registry import ModelRegistry
from deployments.webhook import EVENT, sign
from tests.support.paths import REPO
from tests.support.processes import free_port, stop_group, wait_for_http
from tests.support.ui import CHROMIUM, CHROMIUM_ARGS, start_custom_run

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]
BIN = Path(sys.executable).parent
SECRET = "integration-secret-0123456789"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass(frozen=True)
class Server:
    api: str
    ui: str
    env: dict[str, str]
    checkout: Path
    logs: Path

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            cwd=self.checkout,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        return subprocess.Popen(
            list(args),
            cwd=self.checkout,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped as a group, with what it started
        )

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.api}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.api}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def deployment(self, flow: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/deployments/name/{flow}/{name}")
        return result

    def flow_runs(self, deployment_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.post(
            "/flow_runs/filter",
            {"deployments": {"id": {"any_": [deployment_id]}}, "limit": 50},
        )
        return result

    def wait_for_run(self, run_id: str, timeout: float = 400) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run: dict[str, Any] = self.get(f"/flow_runs/{run_id}")
            if run["state"]["type"] in TERMINAL:
                return run
            assert time.monotonic() < deadline, f"flow run still {run['state']['name']}"
            time.sleep(1)

    def events(self, name: str) -> list[dict[str, Any]]:
        since = "2000-01-01T00:00:00Z"
        page = self.post(
            "/events/filter",
            {"filter": {"event": {"name": [name]}, "occurred": {"since": since}}, "limit": 50},
        )
        events: list[dict[str, Any]] = page["events"]
        return events

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]


def _checkout(target: Path) -> Path:
    for folder in ("flows", "tasks", "blocks", "deployments", "datasets"):
        shutil.copytree(
            REPO / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "prefect.yaml", target / "prefect.yaml")
    return target


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real Prefect server (own SQLite database), stopped when the module ends."""
    root = tmp_path_factory.mktemp("deploy")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_TIMEOUT": "30",
        # Poll often: the tests wait for runs the worker picks up.
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "2",
        "MLOPS_WEBHOOK_SECRET": SECRET,
        # The UI calls the API at this address (Prefect's default is port 4200).
        "PREFECT_UI_API_URL": api,
        "DASK_LOGGING__DISTRIBUTED": "warning",
    }
    logs = root / "logs"
    logs.mkdir()
    found = Server(
        api=api,
        ui=f"http://127.0.0.1:{port}",
        env=env,
        checkout=_checkout(root / "checkout"),
        logs=logs,
    )
    process = found.start(
        "server",
        str(BIN / "prefect"),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    try:
        wait_for_http(f"{api}/health", process, what="prefect server", timeout=180)
        yield found
    finally:
        stop_group(process)


@pytest.fixture(scope="module")
def deployed(server: Server) -> Iterator[Server]:
    """``mlops setup``, ``prefect deploy --all`` and a process worker on ``local-process``."""
    first = server.run(str(BIN / "mlops"), "setup")
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


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tasks.demo_data import write_demo_data

    out = tmp_path_factory.mktemp("deploy-landing")
    write_demo_data(str(out), rows=3000, files=3, seed=5)
    return out


@pytest.fixture(scope="module")
def gateway(deployed: Server) -> Iterator[str]:
    """The gateway as the README starts it: the secret from the block `mlops setup` saved."""
    port = free_port()
    command = [str(BIN / "mlops"), "webhook", "serve", "--port", str(port)]
    without_env = replace(deployed, env={**deployed.env, "MLOPS_WEBHOOK_SECRET": ""})
    process = without_env.start("webhook", *command, "--secret-block", "mlops-webhook-secret")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/healthz", process, what="webhook gateway", timeout=60)
        yield url
    finally:
        stop_group(process)


def signed_post(url: str, body: bytes, *, secret: str = SECRET, age: int = 0) -> httpx.Response:
    stamp = str(int(time.time()) - age)
    return httpx.post(
        url,
        content=body,
        headers={
            "X-Mlops-Timestamp": stamp,
            "X-Mlops-Signature": sign(secret, stamp, body),
            "Content-Type": "application/json",
        },
        timeout=30,
    )


def test_setup_is_idempotent_and_deploy_creates_pools_schedules_and_triggers(
    deployed: Server,
) -> None:
    again = deployed.run(str(BIN / "mlops"), "setup")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "exists     work pool 'local-process' (process)" in again.stdout
    assert "exists     work pool 'kubernetes' (kubernetes)" in again.stdout
    assert "created" not in again.stdout
    # Prefect's own command registers the same block types, one module at a time.
    register = deployed.run(str(BIN / "prefect"), "block", "register", "-m", "blocks.cluster")
    assert register.returncode == 0 and "MLOps Dask Cluster" in register.stdout, register.stderr
    slugs = {b["slug"] for b in deployed.post("/block_types/filter", {})}
    assert {"mlops-dask-cluster", "mlops-model-registry", "mlops-lake-result-storage"} <= slugs
    pools = {p["name"]: p["type"] for p in deployed.post("/work_pools/filter", {})}
    assert pools["local-process"] == "process" and pools["kubernetes"] == "kubernetes"

    names = {
        (d["name"], d["work_pool_name"])
        for d in deployed.post("/deployments/filter", {"limit": 50})
    }
    assert names == {
        ("nightly", "local-process"),
        ("kubernetes", "kubernetes"),
        ("on-demand", "local-process"),
    }
    nightly = deployed.deployment("ml-pipeline", "nightly")
    [schedule] = nightly["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *" and schedule["active"]
    assert nightly["enforce_parameter_schema"]
    # The scheduler has already put the next nightly runs on the calendar.
    kube = deployed.deployment("ml-pipeline", "kubernetes")
    assert kube["job_variables"]["service_account_name"] == "mlops-runner"
    assert kube["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/mlops"}}
    ]
    for flow in ("ingest", "validate", "train", "promote"):
        assert deployed.deployment(flow, "on-demand")["work_pool_name"] == "local-process"
    automations = deployed.post("/automations/filter", {})
    [trigger] = [a for a in automations if a["name"].startswith("nightly")]
    assert trigger["trigger"]["expect"] == [EVENT]
    assert trigger["trigger"]["match"] == {"prefect.resource.id": "mlops.dataset.customers"}
    assert trigger["actions"][0]["parameters"] == {"source": "{{ event.payload.source }}"}


def test_the_parameter_schema_is_enforced(deployed: Server) -> None:
    nightly = deployed.deployment("ml-pipeline", "nightly")
    response = httpx.post(
        f"{deployed.api}/deployments/{nightly['id']}/create_flow_run",
        json={"parameters": {"cache": {"expiration_days": -1}}},
        timeout=30,
    )
    assert response.status_code in (409, 422), response.text
    assert "expiration_days" in response.text


def test_a_deployment_run_completes_a_pipeline(
    deployed: Server, landing: Path, tmp_path: Path, dask_client: Any
) -> None:
    lake = tmp_path / "lake"
    # The session's Dask cluster as an existing scheduler: no cluster start per stage (the
    # triggered run below uses the deployment's default, a LocalCluster per stage).
    cluster = dask_client.scheduler.address
    started = deployed.run(
        str(BIN / "prefect"),
        "deployment",
        "run",
        "ml-pipeline/nightly",
        "--param",
        f"source={landing}",
        "--param",
        f"lake={lake}",
        "--param",
        f"cluster={cluster}",
    )
    assert started.returncode == 0, started.stderr[-2000:]
    nightly = deployed.deployment("ml-pipeline", "nightly")
    [run] = [
        r for r in deployed.flow_runs(nightly["id"]) if r["parameters"].get("lake") == str(lake)
    ]
    done = deployed.wait_for_run(run["id"])
    assert done["state"]["type"] == "COMPLETED", deployed.log("worker")
    assert ModelRegistry(lake=str(lake)).champion("customers") is not None


def test_a_signed_webhook_starts_the_pipeline_on_its_landing_folder(
    deployed: Server, gateway: str, landing: Path
) -> None:
    nightly = deployed.deployment("ml-pipeline", "nightly")
    before = {r["id"] for r in deployed.flow_runs(nightly["id"])}
    body = json.dumps({"dataset": "customers", "source_uri": str(landing)}).encode()
    response = signed_post(f"{gateway}/hooks/generic", body)
    assert response.status_code == 202, response.text
    [event_id] = response.json()["events"]

    deadline = time.monotonic() + 120
    while not (runs := [r for r in deployed.flow_runs(nightly["id"]) if r["id"] not in before]):
        assert time.monotonic() < deadline, "the trigger started no run:\n" + deployed.log("server")
        time.sleep(1)
    [run] = runs
    # Templated from the event; the rest are the deployment's defaults.
    assert run["parameters"]["source"] == str(landing)
    assert run["parameters"]["lake"] == ".mlops/lake"
    done = deployed.wait_for_run(run["id"])
    assert done["state"]["type"] == "COMPLETED", deployed.log("worker")
    lake = deployed.checkout / ".mlops" / "lake"
    assert ModelRegistry(lake=str(lake)).champion("customers") is not None
    metrics = httpx.get(f"{gateway}/metrics", timeout=30).text
    emitted = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "mlops_webhook_events_emitted_total"
        and sample.labels == {"source": "generic", "dataset": "customers"}
    ]
    assert emitted == [1.0]
    [event] = [e for e in deployed.events(EVENT) if e["id"] == event_id]
    assert event["resource"]["prefect.resource.id"] == "mlops.dataset.customers"
    assert event["payload"]["source"] == str(landing)


@pytest.mark.parametrize(
    ("case", "status"),
    [("unsigned", 401), ("forged", 401), ("stale", 401), ("oversized", 413), ("malformed", 400)],
)
def test_bad_webhooks_are_refused_and_emit_no_event(
    deployed: Server, gateway: str, case: str, status: int
) -> None:
    marker = f"/landing/refused-{case}"
    body = json.dumps({"dataset": "customers", "source_uri": marker}).encode()
    url = f"{gateway}/hooks/generic"
    if case == "unsigned":
        response = httpx.post(url, content=body, timeout=30)
    elif case == "forged":
        response = signed_post(url, body, secret="not-the-secret-0123456789")
    elif case == "stale":
        response = signed_post(url, body, age=301)
    elif case == "oversized":
        response = signed_post(url, body[:-1] + b"," + b" " * 300_000 + b"}")
    else:
        response = signed_post(url, body.replace(b"source_uri", b"path"))
    assert response.status_code == status, response.text
    assert SECRET not in response.text
    time.sleep(2)  # events are accepted asynchronously: give a wrong one time to land
    assert not [e for e in deployed.events(EVENT) if e["payload"].get("source") == marker]
    assert SECRET not in deployed.log("webhook")


def test_a_run_started_from_the_ui_with_a_custom_parameter_completes(
    deployed: Server, landing: Path, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    deployment = deployed.deployment("ingest", "on-demand")
    lake = tmp_path / "ui-lake"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            run_id = start_custom_run(
                page, deployed.ui, deployment["id"], {"source": str(landing), "lake": str(lake)}
            )
        finally:
            browser.close()
    done = deployed.wait_for_run(run_id)
    assert done["state"]["type"] == "COMPLETED", deployed.log("worker")
    # The custom values reached the run; the others are the deployment's defaults.
    assert done["parameters"]["lake"] == str(lake)
    assert done["parameters"]["spec"] == "datasets/demo.yaml"
    assert list((lake / "datasets" / "customers" / "versions").glob("*.json"))
