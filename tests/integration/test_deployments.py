"""Deployments against a real ``prefect server start``, a real process worker and the webhook
gateway: ``mlops setup``, ``prefect deploy --all`` from prefect.yaml, the gateway refusing
bad webhooks, and a run started from the Prefect UI in headless Chromium. Runs started by
``prefect deployment run``, by signed webhooks and by drift events are in
test_automations.py, on the same server.

Everything runs from a copy of the repository (the "checkout"), so the deployments' relative
paths (``.mlops/lake``) resolve there and not in the developer's own checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.webhook import EVENT, PURPOSE_LABEL
from tasks.score.publish import DRIFT_EVENT
from tests.support.prefect_server import (
    BIN,
    LATE_AFTER_MINUTES,
    SECRET,
    Receiver,
    Server,
    events_socket,
    signed_post,
    socket_session,
)
from tests.support.ui import CHROMIUM, CHROMIUM_ARGS, log_in, start_custom_run

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def test_setup_is_idempotent_and_deploy_creates_pools_schedules_and_triggers(
    deployed: Server, alerts: Receiver
) -> None:
    again = deployed.run(
        str(BIN / "mlops"), "setup", "--notify", alerts.url, "--late-after", LATE_AFTER_MINUTES
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "exists     work pool 'local-process' (process)" in again.stdout
    assert "exists     work pool 'kubernetes' (kubernetes)" in again.stdout
    assert "exists     automation 'mlops: run failed'" in again.stdout
    assert "created" not in again.stdout and "updated" not in again.stdout
    # Prefect's own command registers the same block types, one module at a time.
    register = deployed.run(str(BIN / "prefect"), "block", "register", "-m", "blocks.cluster")
    assert register.returncode == 0 and "MLOps Dask Cluster" in register.stdout, register.stderr
    slugs = {b["slug"] for b in deployed.post("/block_types/filter", {})}
    assert {
        "mlops-dask-cluster",
        "mlops-model-registry",
        "mlops-lake-result-storage",
        "mlops-apprise-alerts",
        "mlops-webhook-gateway",
    } <= slugs
    pools = {p["name"]: p["type"] for p in deployed.post("/work_pools/filter", {})}
    assert pools["local-process"] == "process" and pools["kubernetes"] == "kubernetes"

    names = {
        (d["name"], d["work_pool_name"])
        for d in deployed.post("/deployments/filter", {"limit": 50})
    }
    assert names == {
        ("nightly", "local-process"),
        ("retrain", "local-process"),
        ("kubernetes", "kubernetes"),
        ("on-demand", "local-process"),
        ("weekly", "local-process"),
    }
    lake_jobs = {
        flow: deployed.deployment(flow, name)
        for flow, name in [
            ("lake-gc", "nightly"),
            ("lake-backup", "nightly"),
            ("lake-verify", "weekly"),
        ]
    }
    assert lake_jobs["lake-gc"]["parameters"] == {"lake": ".mlops/lake", "apply": True}
    assert [s["schedule"]["cron"] for j in lake_jobs.values() for s in j["schedules"]] == [
        "0 5 * * *",
        "30 5 * * *",
        "0 6 * * 0",
    ]
    # The retention policy is a typed form in the UI, its bounds included.
    policy = lake_jobs["lake-gc"]["parameter_openapi_schema"]["definitions"]["RetentionPolicy"]
    assert set(policy["properties"]) == {
        "keep_history",
        "keep_days",
        "keep_datasets",
        "grace_hours",
    }
    nightly = deployed.deployment("ml-pipeline", "nightly")
    [schedule] = nightly["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *" and schedule["active"]
    assert nightly["enforce_parameter_schema"]
    [scoring] = deployed.deployment("score", "nightly")["schedules"]
    assert scoring["schedule"]["cron"] == "0 4 * * *" and scoring["active"]
    kube = deployed.deployment("ml-pipeline", "kubernetes")
    assert kube["job_variables"]["service_account_name"] == "mlops-runner"
    assert kube["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/mlops"}}
    ]
    for flow in ("ingest", "validate", "train", "promote"):
        assert deployed.deployment(flow, "on-demand")["work_pool_name"] == "local-process"

    triggers = deployment_triggers(deployed)
    training = triggers[("ml-pipeline", "nightly")]
    assert training["expect"] == [EVENT]
    assert training["match"] == {
        "prefect.resource.id": "mlops.dataset.customers",
        PURPOSE_LABEL: "training",
    }
    assert training["parameters"] == {"source": "{{ event.payload.source }}"}
    assert triggers[("score", "nightly")]["match"][PURPOSE_LABEL] == "scoring"
    retrain = triggers[("ml-pipeline", "retrain")]
    assert retrain["expect"] == [DRIFT_EVENT] and retrain["within"] == 21600
    assert retrain["parameters"]["source"] == "{{ event.payload.training_source }}"
    alerting = {a["name"]: a for a in deployed.post("/automations/filter", {})}
    for name in ("mlops: run failed", "mlops: drift alert", "mlops: run late"):
        assert alerting[name]["enabled"], name
        assert alerting[name]["actions"][0]["type"] == "send-notification"


def deployment_triggers(server: Server) -> dict[tuple[str, str], dict[str, Any]]:
    """Each deployment's trigger (with the parameters its action passes), by flow and name."""
    flows = {f["id"]: f["name"] for f in server.post("/flows/filter", {})}
    deployments = {
        d["id"]: (flows[d["flow_id"]], d["name"])
        for d in server.post("/deployments/filter", {"limit": 50})
    }
    found = {}
    for automation in server.post("/automations/filter", {}):
        action = automation["actions"][0]
        if action["type"] == "run-deployment" and action.get("deployment_id") in deployments:
            trigger = {**automation["trigger"], "parameters": action["parameters"]}
            found[deployments[action["deployment_id"]]] = trigger
    return found


def test_the_server_takes_only_clients_with_its_credentials(deployed: Server) -> None:
    # The REST API: nothing without the right user:password, except the health probes.
    url = f"{deployed.api}/deployments/filter"
    assert httpx.post(url, json={}, timeout=30).status_code == 401
    assert httpx.post(url, json={}, auth=("mlops", "wrong"), timeout=30).status_code == 401
    assert deployed.request("POST", "/deployments/filter", json={}).status_code == 200
    assert httpx.get(f"{deployed.api}/health", timeout=30).status_code == 200

    # The events websockets (authenticated in a message, not by the HTTP middleware; Prefect
    # once let them through, prefect#17687): every way in without the token is refused.
    _, _, password = deployed.auth.partition(":")
    name = f"mlops.test.intruder-{uuid.uuid4().hex[:8]}"
    event = json.dumps(
        {
            "id": str(uuid.uuid4()),
            "occurred": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "event": name,
            "resource": {"prefect.resource.id": "mlops.test"},
        }
    )
    events_in, events_out = (
        events_socket(deployed, "/events/in"),
        events_socket(deployed, "/events/out"),
    )
    subscribe = json.dumps({"type": "filter", "filter": {"event": {"name": [name]}}})
    attempts = {
        "in, no subprotocol": socket_session(events_in, subprotocol=False, token=None, send=event),
        "in, no token": socket_session(events_in, subprotocol=True, token=None, send=event),
        "in, password only": socket_session(
            events_in, subprotocol=True, token=password, send=event
        ),
        "in, wrong token": socket_session(events_in, subprotocol=True, token="mlops:x", send=event),
        "out, no subprotocol": socket_session(
            events_out, subprotocol=False, token=None, send=subscribe
        ),
        "out, wrong token": socket_session(events_out, subprotocol=True, token="x", send=subscribe),
    }
    assert not [how for how, outcome in attempts.items() if outcome == "accepted"], attempts
    time.sleep(2)  # what the server took is recorded within a moment
    assert deployed.events(name) == []
    # The same event with the credentials is taken: the refusals were the credentials'.
    taken = socket_session(events_in, subprotocol=True, token=deployed.auth, send=event)
    assert taken == "accepted"
    deadline = time.monotonic() + 30
    while not deployed.events(name):
        assert time.monotonic() < deadline, "the authenticated event was not recorded"
        time.sleep(0.5)

    # The server commands check the credentials first: one line and exit 2, in seconds.
    wrong = {**deployed.env, "PREFECT_API_AUTH_STRING": "mlops:wrong"}
    for command in (["setup"], ["webhook", "serve", "--allow-any-source"]):
        started = time.monotonic()
        done = subprocess.run(
            [str(BIN / "mlops"), *command],
            cwd=deployed.checkout,
            env=wrong,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, (command, done.stderr[-2000:])
        assert "refused this client's credentials" in done.stderr, done.stderr
        assert "PREFECT_API_AUTH_STRING" in done.stderr and "Traceback" not in done.stderr
        print(
            f"mlops {' '.join(command)} with a wrong password: {time.monotonic() - started:.1f} s"
        )


def test_the_server_keeps_its_state_in_postgresql(deployed: Server) -> None:
    if not deployed.database:
        pytest.skip(
            "PostgreSQL not installed (apt-get install postgresql): the server is on SQLite"
        )
    import asyncio

    import asyncpg

    async def count(table: str) -> int:
        connection = await asyncpg.connect(deployed.database.replace("+asyncpg", "", 1))
        try:
            return int(await connection.fetchval(f"select count(*) from {table}"))
        finally:
            await connection.close()

    # What the API serves is what PostgreSQL holds: every deployment, the work pools.
    deployments = deployed.post("/deployments/filter", {})
    assert asyncio.run(count("deployment")) == len(deployments) > 0
    assert asyncio.run(count("work_pool")) >= 2


def test_the_parameter_schema_is_enforced(deployed: Server) -> None:
    nightly = deployed.deployment("ml-pipeline", "nightly")
    response = deployed.request(
        "POST",
        f"/deployments/{nightly['id']}/create_flow_run",
        json={"parameters": {"cache": {"expiration_days": -1}}},
    )
    assert response.status_code in (409, 422), response.text
    assert "expiration_days" in response.text


BAD_WEBHOOKS = {
    "unsigned": 401,
    "forged": 401,
    "stale": 401,
    "oversized": 413,
    "malformed": 400,
    "foreign-purpose": 400,
    "not-allowed": 403,  # validly signed, but naming a location outside the allowlist
}


def test_bad_webhooks_are_refused_and_emit_no_event(deployed: Server, gateway: str) -> None:
    url = f"{gateway}/hooks/generic"
    for case, status in BAD_WEBHOOKS.items():
        marker = f"/landing/refused-{case}"
        note: dict[str, str] = {"dataset": "customers", "source_uri": marker}
        body = json.dumps(note).encode()
        if case == "unsigned":
            response = httpx.post(url, content=body, timeout=30)
        elif case == "forged":
            response = signed_post(url, body, secret="not-the-secret-0123456789")
        elif case == "stale":
            response = signed_post(url, body, age=301)
        elif case == "oversized":
            response = signed_post(url, body[:-1] + b"," + b" " * 300_000 + b"}")
        elif case == "not-allowed":
            response = signed_post(url, body)
        elif case == "foreign-purpose":
            response = signed_post(url, json.dumps({**note, "purpose": "deploy"}).encode())
        else:
            response = signed_post(url, body.replace(b"source_uri", b"path"))
        assert response.status_code == status, (case, response.text)
        assert SECRET not in response.text
    # Events are accepted asynchronously: give a wrong one time to land.
    time.sleep(2)
    refused = [e for e in deployed.events(EVENT) if "refused-" in e["payload"].get("source", "")]
    assert refused == []
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
            log_in(page, deployed.ui, deployed.auth)
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
