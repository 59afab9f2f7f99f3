"""``mlops setup``: what a Prefect server needs before ``prefect deploy --all``.

Registers the package's block types, creates the default block documents, the two work
pools named in ``prefect.yaml`` and, given an alert target, the notification block and the
alert automations (``deployments/alerts.py``). Idempotent: what exists is left as it is (a
user may have edited it in the UI), except the kubernetes pool's job template and the
automations' triggers and messages, which follow the files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from prefect.blocks.notifications import NotificationBlock
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

from blocks.alerts import AppriseAlerts
from blocks.cluster import DaskClusterConfig
from blocks.gateway import WebhookGatewayConfig
from blocks.registry import ModelRegistry
from blocks.results import LakeResultStorage
from deployments.alerts import (
    ALERT_BLOCK,
    LATE_AFTER,
    automations,
    ensure_automations,
    notification_block,
)

REPO = Path(__file__).resolve().parent.parent
KUBERNETES_TEMPLATE = REPO / "infra" / "k8s" / "base-job-template.json"
LOCAL_POOL = "local-process"
KUBERNETES_POOL = "kubernetes"
WEBHOOK_SECRET_BLOCK = "mlops-webhook-secret"
WEBHOOK_SECRET_ENV = "MLOPS_WEBHOOK_SECRET"


@dataclass(frozen=True)
class Step:
    """One thing setup did or found."""

    what: str
    outcome: str  # "created", "exists", "updated", "registered", "skipped"

    def __str__(self) -> str:
        return f"{self.outcome:<10} {self.what}"


def setup(
    *,
    kubernetes_template: Path = KUBERNETES_TEMPLATE,
    notify: str | None = None,
    notify_block: str | None = None,
    late_after: timedelta = LATE_AFTER,
) -> list[Step]:
    """Register block types, create default blocks, work pools and alerts; report each step.

    ``notify`` is an alert target URL (saved as the ``mlops-alerts`` block); ``notify_block``
    names a notification block made in the UI (``slack-webhook/oncall``). Without either, an
    ``mlops-alerts`` block saved before is used, and without one no alerts are set up.
    """
    return [
        *register_block_types(),
        *default_blocks(),
        local_pool(),
        kubernetes_pool(kubernetes_template),
        *alerts(notify=notify, notify_block=notify_block, late_after=late_after),
    ]


def register_block_types() -> list[Step]:
    """What ``prefect block register -m blocks.<module>`` does, for every module."""

    steps = []
    for block in (
        DaskClusterConfig,
        ModelRegistry,
        LakeResultStorage,
        AppriseAlerts,
        WebhookGatewayConfig,
    ):
        block.register_type_and_schema()
        steps.append(Step(f"block type '{block.get_block_type_slug()}'", "registered"))
    return steps


def default_blocks() -> list[Step]:
    """A ``default`` cluster config (local) and, if the environment has one, the secret."""

    steps = [_save_once(DaskClusterConfig(mode="local"), "default", "cluster config")]
    secret = os.environ.get(WEBHOOK_SECRET_ENV)
    if secret:
        steps.append(_save_once(Secret(value=secret), WEBHOOK_SECRET_BLOCK, "webhook secret"))
    else:
        steps.append(
            Step(
                f"webhook secret block '{WEBHOOK_SECRET_BLOCK}' (set {WEBHOOK_SECRET_ENV} "
                "to create it)",
                "skipped",
            )
        )
    return steps


def _save_once(block: Any, name: str, label: str) -> Step:
    what = f"{label} block '{block.get_block_type_slug()}/{name}'"
    try:
        type(block).load(name)
    except ValueError:  # not saved yet
        block.save(name)
        return Step(what, "created")
    return Step(what, "exists")


def local_pool() -> Step:
    """The ``local-process`` pool: flow runs as subprocesses of a process worker."""

    template = ProcessWorker.get_default_base_job_template()
    return _ensure_pool(LOCAL_POOL, "process", template, update=False)


def kubernetes_pool(template_path: Path) -> Step:
    """The ``kubernetes`` pool with the job template from ``infra/k8s``."""
    template = json.loads(template_path.read_text())
    return _ensure_pool(KUBERNETES_POOL, "kubernetes", template, update=True)


def _ensure_pool(name: str, kind: str, template: dict[str, Any], *, update: bool) -> Step:

    what = f"work pool '{name}' ({kind})"
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(
                WorkPoolCreate(name=name, type=kind, base_job_template=template)
            )
            return Step(what, "created")
        if existing.type != kind:
            raise ValueError(
                f"work pool '{name}' exists with type '{existing.type}', expected '{kind}'; "
                "delete it or rename it"
            )
        if update and existing.base_job_template != template:
            client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
            return Step(what, "updated")
    return Step(what, "exists")


# Alerts -----------------------------------------------------------------------------------------
ALERT_BLOCK_TYPES = ("custom-webhook", "slack-webhook", "mlops-apprise-alerts")


def alerts(
    *, notify: str | None, notify_block: str | None, late_after: timedelta = LATE_AFTER
) -> list[Step]:
    """The notification block and the automations that send through it."""
    steps: list[Step] = []
    if notify:
        block, step = _save_alert_block(notification_block(notify))
        steps.append(step)
    elif notify_block:
        block = _load_notification_block(notify_block)
        steps.append(Step(f"notification block '{notify_block}'", "exists"))
    else:
        found = _saved_alert_block()
        if found is None:
            return [
                Step(
                    "alert automations (give --notify URL or --notify-block TYPE/NAME)",
                    "skipped",
                )
            ]
        block = found
        steps.append(Step(f"notification block '{_slug(block)}/{ALERT_BLOCK}'", "exists"))
    block_id = block._block_document_id
    if block_id is None:
        raise ValueError("the notification block has no id on the server")
    for outcome in ensure_automations(automations(block_id, late_after=late_after)):
        steps.append(Step(f"automation '{outcome.name}'", outcome.outcome))
    return steps


def _slug(block: Block) -> str:
    return str(block.get_block_type_slug())


def _save_alert_block(block: NotificationBlock) -> tuple[NotificationBlock, Step]:
    what = f"notification block '{_slug(block)}/{ALERT_BLOCK}'"
    try:
        saved: Any = type(block).load(ALERT_BLOCK)
    except ValueError:  # not saved yet
        block.save(ALERT_BLOCK)
        return block, Step(what, "created")
    if _fields(saved) == _fields(block):
        return saved, Step(what, "exists")
    block.save(ALERT_BLOCK, overwrite=True)
    return block, Step(what, "updated")


def _fields(block: Block) -> dict[str, Any]:
    # Python mode: secrets compare by value (JSON mode masks them all alike); the
    # underscored keys say where the block is saved, not what it holds.
    return {k: v for k, v in block.model_dump().items() if not k.startswith("_")}


def _load_notification_block(ref: str) -> NotificationBlock:
    slug, sep, name = ref.partition("/")
    if not sep or not slug or not name:
        raise ValueError(f"--notify-block {ref!r}: expected TYPE/NAME, e.g. slack-webhook/oncall")
    try:
        block: Any = Block.load(ref)
    except ValueError as err:
        raise ValueError(f"--notify-block {ref!r}: {err}") from None
    if not isinstance(block, NotificationBlock):
        raise ValueError(f"--notify-block {ref!r} is not a notification block")
    return block


def _saved_alert_block() -> NotificationBlock | None:
    for slug in ALERT_BLOCK_TYPES:
        try:
            block: Any = Block.load(f"{slug}/{ALERT_BLOCK}")
        except ValueError:
            continue
        return block if isinstance(block, NotificationBlock) else None
    return None
