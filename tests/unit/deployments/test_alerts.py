"""Alerts: which block an alert target becomes, that an apprise URL really delivers, that the
automations' templates are valid for the server, and that setup creates them once and keeps
one a user paused paused. (tests/integration/test_automations.py sees them fire on a real
server.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
from prefect.client.orchestration import get_client
from prefect.server.events.actions import SendNotification as ServerSendNotification
from pydantic import ValidationError

import deployments.alerts as alerts_module
from blocks.alerts import AppriseAlerts
from blocks.cluster import DaskClusterConfig
from deployments.alerts import ALERT_BLOCK, FAILED_STATES, automations, notification_block
from deployments.setup import alerts
from tasks.score.publish import DRIFT_EVENT
from tests.support.prefect_server import receiver

pytestmark = pytest.mark.timeout(120)


def test_each_kind_of_target_becomes_its_block() -> None:
    slack = notification_block("https://hooks.slack.com/services/T000/B000/XXXX")
    assert isinstance(slack, SlackWebhook)
    webhook = notification_block("https://alerts.example.com/hook")
    assert isinstance(webhook, CustomWebhookNotificationBlock)
    assert webhook.json_data == {"subject": "{{subject}}", "body": "{{body}}"}
    mail = notification_block("mailto://user:pw@smtp.example.com?to=oncall@example.com")
    assert isinstance(mail, AppriseAlerts)
    assert "pw" not in repr(mail)  # the URL is a secret
    with pytest.raises(ValueError, match="expected a Slack webhook, an http"):
        notification_block("oncall@example.com")
    with pytest.raises(ValidationError, match="must be an apprise URL"):
        AppriseAlerts(url="not a url")


def test_an_apprise_url_delivers_to_its_target() -> None:
    with receiver() as got:
        host = got.url.removeprefix("http://")
        AppriseAlerts(url=f"json://{host}").notify(body="the body", subject="the subject")
        [message] = got.wait_for(lambda m: True, timeout=10)
    assert message["title"] == "the subject" and message["message"] == "the body"


def test_the_automations_are_valid_for_the_server() -> None:
    block = uuid.uuid4()
    failed, drift, late = automations(block)
    assert failed.trigger.expect == FAILED_STATES
    assert failed.trigger.match_related.model_dump() == {
        "prefect.resource.role": "flow",
        "prefect.resource.name": ["ml-pipeline", "score"],
    }
    assert drift.trigger.expect == {DRIFT_EVENT}
    assert drift.trigger.within == timedelta(hours=1)
    assert drift.trigger.for_each == {"prefect.resource.id"}
    assert late.trigger.after == {"prefect.flow-run.Late"}
    assert late.trigger.within == timedelta(minutes=15)
    sooner = automations(block, late_after=timedelta(seconds=12))[2]
    assert sooner.trigger.within == timedelta(seconds=12) and "0.2 minutes" in sooner.description
    assert "prefect.flow-run.Late" not in late.trigger.expect
    for automation in (failed, drift, late):
        [action] = automation.actions
        # The server's model parses the Jinja templates and refuses invalid ones.
        server_side = ServerSendNotification.model_validate(action.model_dump(mode="json"))
        assert server_side.block_document_id == block


@pytest.fixture
def no_automations_after(prefect_api: str) -> Iterator[None]:
    """The session's API is shared: its later failing flow tests must not send alerts."""
    yield
    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            if automation.name.startswith("mlops: "):
                client.delete_automation(automation.id)


def test_setup_creates_the_alerts_once_and_keeps_a_paused_one_paused(
    no_automations_after: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    DaskClusterConfig(mode="local").save("not-a-notifier", overwrite=True)
    target = "http://127.0.0.1:9/alerts"
    first = [str(step) for step in alerts(notify=target, notify_block=None)]
    assert first[0] == f"created    notification block 'custom-webhook/{ALERT_BLOCK}'"
    assert first[1:] == [
        "created    automation 'mlops: run failed'",
        "created    automation 'mlops: drift alert'",
        "created    automation 'mlops: run late'",
    ]
    # Again, without naming the target: the saved block is found; nothing changes.
    again = [str(step) for step in alerts(notify=None, notify_block=None)]
    assert again[0] == f"exists     notification block 'custom-webhook/{ALERT_BLOCK}'"
    assert all(step.startswith("exists") for step in again)

    with get_client(sync_client=True) as client:
        [drift] = client.read_automations_by_name("mlops: drift alert")
        client.pause_automation(drift.id)
    monkeypatch.setattr(alerts_module, "DRIFT_ALERT_COOLDOWN", timedelta(hours=2))
    changed = [str(step) for step in alerts(notify=target, notify_block=None)]
    assert "updated    automation 'mlops: drift alert'" in changed
    assert "exists     automation 'mlops: run failed'" in changed
    with get_client(sync_client=True) as client:
        [drift] = client.read_automations_by_name("mlops: drift alert")
    assert drift.trigger.within == timedelta(hours=2) and not drift.enabled

    # A block made in the UI instead of a URL.
    steps = [str(s) for s in alerts(notify=None, notify_block=f"custom-webhook/{ALERT_BLOCK}")]
    assert steps[0] == f"exists     notification block 'custom-webhook/{ALERT_BLOCK}'"
    for bad, message in (
        ("oncall", "expected TYPE/NAME"),
        ("custom-webhook/nobody", "--notify-block 'custom-webhook/nobody'"),
        ("mlops-dask-cluster/not-a-notifier", "is not a notification block"),
    ):
        with pytest.raises(ValueError, match=message):
            alerts(notify=None, notify_block=bad)
