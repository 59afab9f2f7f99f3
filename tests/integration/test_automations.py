"""The loop closed on a real ``prefect server start`` with a process worker: scoring files
reported to the webhook gateway start a scoring run, its drift alert starts one retraining
(and a second drifted batch inside the cooldown none), and the alert automations that
``mlops setup --notify`` created deliver their messages to an HTTP receiver.

The deployments use their defaults from prefect.yaml, so this chain works on the checkout's
own lake (``.mlops/lake`` in the copy the server's worker runs in).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from blocks.registry import ModelRegistry
from deployments.webhook import EVENT, PURPOSE_LABEL
from tasks.demo_data import write_demo_data
from tasks.ingest.versions import load_version
from tasks.lake import Lake
from tasks.score.publish import DRIFT_EVENT
from tests.support.prefect_server import BIN, Receiver, Server, signed_post

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def start(server: Server, deployment: str, **parameters: str) -> dict[str, Any]:
    """``prefect deployment run`` with parameters; the run it created, once it ended."""
    flow, name = deployment.split("/")
    known = {r["id"] for r in server.flow_runs(server.deployment(flow, name)["id"])}
    args = [f"{k}={v}" for k, v in parameters.items()]
    started = server.run(
        str(BIN / "prefect"),
        "deployment",
        "run",
        deployment,
        *(arg for pair in args for arg in ("--param", pair)),
    )
    assert started.returncode == 0, started.stderr[-2000:]
    [run] = new_runs(server, deployment, known)
    return server.wait_for_run(run["id"])


def new_runs(
    server: Server, deployment: str, known: set[str], *, wait: float = 120
) -> list[dict[str, Any]]:
    """Runs of ``deployment`` not in ``known``, once there is one (or [] after ``wait`` s)."""
    flow, name = deployment.split("/")
    deadline = time.monotonic() + wait
    while True:
        runs = [
            r for r in server.flow_runs(server.deployment(flow, name)["id"]) if r["id"] not in known
        ]
        if runs or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def run_ids(server: Server, deployment: str) -> set[str]:
    flow, name = deployment.split("/")
    return {r["id"] for r in server.flow_runs(server.deployment(flow, name)["id"])}


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_drifted_scoring_batches_start_one_retraining_and_one_alert(
    deployed: Server,
    gateway: str,
    landing: Path,
    scoring_root: Path,
    alerts: Receiver,
    dask_client: Any,
) -> None:
    lake = deployed.checkout / ".mlops" / "lake"
    cluster = dask_client.scheduler.address
    # Training files reported to the gateway: the nightly deployment's trigger trains on them.
    nightly_before = run_ids(deployed, "ml-pipeline/nightly")
    body = json.dumps({"dataset": "customers", "source_uri": str(landing)}).encode()
    response = signed_post(f"{gateway}/hooks/generic", body)
    assert response.status_code == 202, response.text
    [event_id] = response.json()["events"]
    [run] = new_runs(deployed, "ml-pipeline/nightly", nightly_before)
    # Templated from the event; the rest are the deployment's defaults.
    assert run["parameters"]["source"] == str(landing)
    assert run["parameters"]["lake"] == ".mlops/lake"
    trained = deployed.wait_for_run(run["id"])
    assert trained["state"]["type"] == "COMPLETED", deployed.log("worker")
    assert trained["name"].startswith("customers-")
    assert ModelRegistry(lake=str(lake)).champion("customers") is not None
    [event] = [e for e in deployed.events(EVENT) if e["id"] == event_id]
    assert event["resource"]["prefect.resource.id"] == "mlops.dataset.customers"
    assert event["resource"][PURPOSE_LABEL] == "training"
    assert event["payload"]["source"] == str(landing)

    # A labeled batch lands in the scoring folder: the gateway reports scoring files, the
    # score deployment's trigger scores them with the champion.
    first = scoring_root / "batch-1"
    write_demo_data(
        str(first), rows=2000, files=2, seed=71, drift=["monthly_charges"], drift_scale=2.0
    )
    scoring_before = run_ids(deployed, "score/nightly")
    retrain_before = run_ids(deployed, "ml-pipeline/retrain")
    body = json.dumps({"dataset": "customers", "source_uri": f"{first}/"}).encode()
    response = signed_post(f"{gateway}/hooks/generic", body)
    assert response.status_code == 202, response.text
    [scoring] = new_runs(deployed, "score/nightly", scoring_before)
    assert scoring["parameters"]["source"] == f"{first}/"
    scored = deployed.wait_for_run(scoring["id"])
    assert scored["state"]["type"] == "COMPLETED", deployed.log("worker")

    # Its drift alert starts ml-pipeline/retrain on what the champion was trained from.
    [drift] = drift_events(deployed, f"{first}/")
    assert drift["payload"]["drifted"] == ["monthly_charges"]
    # The spec's monitoring.retrain_with_scored: the labeled files joined the training landing.
    added = drift["payload"]["added_to_training"]
    assert len(added) == 2 and all("/scored/" in uri for uri in added)
    [retrain] = new_runs(deployed, "ml-pipeline/retrain", retrain_before)
    assert retrain["parameters"]["source"] == str(landing)
    assert retrain["parameters"]["lake"] == drift["payload"]["lake"]
    lag = (when(retrain["created"]) - when(drift["occurred"])).total_seconds()
    print(f"drift event emitted -> retraining run created: {lag:.1f} s")
    retrained = deployed.wait_for_run(retrain["id"])
    assert retrained["state"]["type"] == "COMPLETED", deployed.log("worker")
    # The new model learned from the landing files and the drifted batch.
    newest = ModelRegistry(lake=str(lake)).versions("customers")[-1]
    learned = load_version(Lake(str(lake)), "customers", newest.dataset_version)
    files = {s.source_uri for p in learned.partitions for s in p.segments}
    assert len(files) == 5 and set(added) <= files
    waited = (when(retrained["start_time"]) - when(drift["occurred"])).total_seconds()
    print(f"drift event emitted -> retraining run started: {waited:.1f} s")

    # A second drifted batch inside the cooldown: a drift event, no second retraining.
    second = scoring_root / "batch-2"
    write_demo_data(
        str(second), rows=2000, files=2, seed=72, drift=["monthly_charges"], drift_scale=2.0
    )
    again = start(deployed, "score/nightly", source=str(second), cluster=cluster)
    assert again["state"]["type"] == "COMPLETED", deployed.log("worker")
    assert drift_events(deployed, str(second))
    assert not new_runs(deployed, "ml-pipeline/retrain", retrain_before | {retrain["id"]}, wait=10)

    # The drift automation sent one message for the two alerts (its own cooldown).
    [message] = alerts.wait_for(lambda m: "drift alert" in m.get("subject", ""))
    assert (
        message["subject"]
        == f"mlops: drift alert for customers@{drift['payload']['model_version']}"
    )
    assert "monthly_charges" in message["body"] and f"{first}/" in message["body"]
    assert f"/runs/flow-run/{scoring['id']}" in message["body"]
    time.sleep(2)
    assert len([m for m in alerts.received if "drift alert" in m.get("subject", "")]) == 1
    print("drift notification:", json.dumps(message, indent=2))
    assert gateway_events(gateway) == 2.0  # the training and the scoring notification


def gateway_events(gateway: str) -> float:
    """The gateway's count of events emitted for generic notifications of customers."""
    metrics = httpx.get(f"{gateway}/metrics", timeout=30).text
    [emitted] = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "mlops_webhook_events_emitted_total"
        and sample.labels == {"source": "generic", "dataset": "customers"}
    ]
    return emitted


def test_a_failed_pipeline_run_sends_one_alert_naming_the_dataset_and_the_run(
    deployed: Server, alerts: Receiver, tmp_path: Path, dask_client: Any
) -> None:
    bad = tmp_path / "bad-landing"
    bad.mkdir()
    for i in range(2):
        (bad / f"part-{i}.csv").write_text("not,the,columns\n1,2,3\n")
    done = start(
        deployed,
        "ml-pipeline/nightly",
        source=str(bad),
        lake=str(tmp_path / "lake"),
        cluster=dask_client.scheduler.address,
    )
    assert done["state"]["type"] == "FAILED", deployed.log("worker")
    name = done["name"]
    assert name.startswith("customers-")
    [message] = alerts.wait_for(lambda m: name in m.get("subject", ""))
    assert message["subject"] == f"mlops: ml-pipeline run {name} failed"
    body = message["body"]
    assert "dataset:  customers" in body and f"/runs/flow-run/{done['id']}" in body
    assert "could be ingested" in body and str(bad) in body
    time.sleep(2)
    assert len([m for m in alerts.received if name in m.get("subject", "")]) == 1
    print("failure notification:", json.dumps(message, indent=2))


def test_a_run_no_worker_picks_up_sends_one_late_alert(deployed: Server, alerts: Receiver) -> None:
    # No worker polls the kubernetes pool here: the run stays Late.
    before = run_ids(deployed, "ml-pipeline/kubernetes")
    started = deployed.run(str(BIN / "prefect"), "deployment", "run", "ml-pipeline/kubernetes")
    assert started.returncode == 0, started.stderr[-2000:]
    [run] = new_runs(deployed, "ml-pipeline/kubernetes", before)
    try:
        [message] = alerts.wait_for(lambda m: run["name"] in m.get("subject", ""), timeout=180)
    finally:
        deployed.request(
            "POST",
            f"/flow_runs/{run['id']}/set_state",
            json={"state": {"type": "CANCELLED"}, "force": True},
        ).raise_for_status()
    assert message["subject"] == f"mlops: ml-pipeline run {run['name']} is late"
    body = message["body"]
    assert "is a worker polling work pool kubernetes?" in body
    assert f"/runs/flow-run/{run['id']}" in body and "spec:     datasets/demo.yaml" in body
    # Its flow never ran, so its name is the server's and names no dataset.
    assert "dataset:" not in body
    print("late notification:", json.dumps(message, indent=2))


def drift_events(server: Server, source: str) -> list[dict[str, Any]]:
    """The drift events of the scoring run of ``source`` (events land asynchronously)."""
    deadline = time.monotonic() + 30
    while True:
        found = [e for e in server.events(DRIFT_EVENT) if e["payload"]["source"] == source]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)
