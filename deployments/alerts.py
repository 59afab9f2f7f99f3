"""Alerts through Prefect automations: what ``mlops setup --notify`` creates.

Three automations, each sending through one notification block (``mlops-alerts``):

- a run of ``ml-pipeline`` or ``score`` that ends Failed, Crashed or TimedOut;
- a drift alert (``mlops.model.drift-detected``), at most one message per dataset an hour;
- a run of either flow that is still Late 15 minutes (``--late-after``) after it should
  have started.

The messages are Jinja templates the server renders with the run (its name starts with the
dataset, see ``tasks.runtime.naming``), its parameters, its UI link and the event's payload.
Setup is idempotent: an automation that exists is updated to match this file but keeps its
enabled flag, so one paused in the UI stays silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    NotificationBlock,
    SlackWebhook,
)
from prefect.client.orchestration import get_client
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from blocks.alerts import AppriseAlerts
from tasks.score.publish import DRIFT_EVENT

ALERT_BLOCK = "mlops-alerts"
ALERTED_FLOWS = ["ml-pipeline", "score"]
DRIFT_ALERT_COOLDOWN = timedelta(hours=1)
LATE_AFTER = timedelta(minutes=15)
FAILED_STATES = {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"}
# Any state a Late run moves on to: it started, or someone dealt with it.
LEFT_LATE = {
    f"prefect.flow-run.{state}"
    for state in (
        "Pending",
        "Running",
        "Completed",
        "Failed",
        "Crashed",
        "Cancelled",
        "Cancelling",
        "Paused",
        "Scheduled",
        "TimedOut",
    )
}
SLACK_HOSTS = ("https://hooks.slack.com/", "https://hooks.slack-gov.com/")

# A run that started is named "<dataset>-<two words>"; one that never started (late, or
# crashed before its flow ran) still has the server's two-word name, with one hyphen.
RUN_LINES = (
    "{% if flow_run.name.count('-') >= 2 %}"
    "dataset:  {{ flow_run.name.rsplit('-', 2)[0] }}\n"
    "{% endif %}"
    "spec:     {{ flow_run.parameters.spec }}\n"
    "source:   {{ flow_run.parameters.source }}\n"
    "lake:     {{ flow_run.parameters.lake }}\n"
    "run:      {{ flow_run|ui_url }}"
)


def notification_block(url: str) -> NotificationBlock:
    """The block for an alert target: a Slack incoming webhook, any other http(s) URL (a JSON
    POST of ``{"subject", "body"}``) or any apprise URL (``mailto://``, ``tgram://``...)."""
    if url.startswith(SLACK_HOSTS):
        return SlackWebhook(url=url)
    if url.startswith(("http://", "https://")):
        return CustomWebhookNotificationBlock(
            name=ALERT_BLOCK,
            url=url,
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
        )
    if "://" in url:
        return AppriseAlerts(url=url)
    raise ValueError(
        f"--notify {url!r}: expected a Slack webhook, an http(s) URL or an apprise URL "
        "(e.g. mailto://user:password@smtp.example.com?to=oncall@example.com)"
    )


def automations(block_id: UUID, *, late_after: timedelta = LATE_AFTER) -> list[AutomationCore]:
    """The three alert automations, sending through the block ``block_id``; a run counts as
    stuck once it has been Late for ``late_after``."""
    flows = {"prefect.resource.role": "flow", "prefect.resource.name": ALERTED_FLOWS}
    return [
        AutomationCore(
            name="mlops: run failed",
            description="A run of ml-pipeline or score failed, crashed or timed out.",
            trigger=EventTrigger(
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related=flows,
                expect=FAILED_STATES,
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id,
                    subject="mlops: {{ flow.name }} run {{ flow_run.name }} "
                    "{{ flow_run.state.name|lower }}",
                    body="{{ flow.name }} run {{ flow_run.name }} ended "
                    "{{ flow_run.state.name }}: {{ flow_run.state.message }}\n" + RUN_LINES,
                )
            ],
        ),
        AutomationCore(
            name="mlops: drift alert",
            description="Scored data drifted from the champion's training data "
            f"(at most one message per dataset every {_hours(DRIFT_ALERT_COOLDOWN)}).",
            trigger=EventTrigger(
                match={"prefect.resource.id": "mlops.model.*"},
                expect={DRIFT_EVENT},
                for_each={"prefect.resource.id"},
                posture=Posture.Reactive,
                threshold=1,
                # A reactive trigger that fired waits out this window: a burst of drifted
                # batches is one message.
                within=DRIFT_ALERT_COOLDOWN,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id,
                    subject="mlops: drift alert for {{ event.payload.dataset }}"
                    "@{{ event.payload.model_version }}",
                    body="Data scored by {{ event.payload.dataset }}@"
                    "{{ event.payload.model_version }} drifted from its training data: "
                    "{{ event.payload.drifted|join(', ') or 'the predictions' }}.\n"
                    "rows:     {{ event.payload.rows }}\n"
                    "source:   {{ event.payload.source }}\n"
                    "manifest: {{ event.payload.manifest }}\n"
                    "run:      {{ flow_run|ui_url }}",
                )
            ],
        ),
        AutomationCore(
            name="mlops: run late",
            description=f"A run of ml-pipeline or score is still late {_minutes(late_after)} "
            "after it should have started (no worker is polling its pool?).",
            trigger=EventTrigger(
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related=flows,
                after={"prefect.flow-run.Late"},
                expect=LEFT_LATE,
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=late_after,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id,
                    subject="mlops: {{ flow.name }} run {{ flow_run.name }} is late",
                    body="{{ flow.name }} run {{ flow_run.name }} was to start at "
                    "{{ flow_run.expected_start_time }} and has not: is a worker polling "
                    "work pool {{ flow_run.work_pool_name }}?\n" + RUN_LINES,
                )
            ],
        ),
    ]


@dataclass(frozen=True)
class Outcome:
    name: str
    outcome: str  # "created", "updated", "exists"


def ensure_automations(wanted: list[AutomationCore]) -> list[Outcome]:
    """Create or update each automation by name; an existing one keeps its enabled flag."""
    outcomes = []
    with get_client(sync_client=True) as client:
        for automation in wanted:
            existing = client.read_automations_by_name(automation.name)
            if not existing:
                client.create_automation(automation)
                outcomes.append(Outcome(automation.name, "created"))
                continue
            [first, *duplicates] = existing
            for extra in duplicates:  # two setups racing each other created it twice
                client.delete_automation(extra.id)
            if _comparable(first) == _comparable(automation) and not duplicates:
                outcomes.append(Outcome(automation.name, "exists"))
                continue
            client.update_automation(
                first.id, automation.model_copy(update={"enabled": first.enabled})
            )
            outcomes.append(Outcome(automation.name, "updated"))
    return outcomes


def _comparable(automation: AutomationCore) -> dict[str, Any]:
    data = automation.model_dump(mode="json", include={"name", "description", "trigger", "actions"})
    trigger = data["trigger"]
    trigger.pop("id", None)  # generated per instance
    for key in ("after", "expect", "for_each"):  # sets: their order is no difference
        trigger[key] = sorted(trigger.get(key) or [])
    return data


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return "hour" if hours == 1 else f"{hours:g} hours"


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:g} minutes"
