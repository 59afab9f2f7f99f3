"""``mlops setup``: what a Prefect server needs before ``prefect deploy --all``.

Registers the package's block types, creates the default block documents and the two work
pools named in ``prefect.yaml``. Idempotent: what exists is left as it is (a user may have
edited it in the UI), except the kubernetes pool's job template, which follows the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

from blocks.cluster import DaskClusterConfig
from blocks.registry import ModelRegistry
from blocks.results import LakeResultStorage

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


def setup(*, kubernetes_template: Path = KUBERNETES_TEMPLATE) -> list[Step]:
    """Register block types, create default blocks and work pools; report each step."""
    return [
        *register_block_types(),
        *default_blocks(),
        local_pool(),
        kubernetes_pool(kubernetes_template),
    ]


def register_block_types() -> list[Step]:
    """What ``prefect block register -m blocks.<module>`` does, for every module."""

    steps = []
    for block in (DaskClusterConfig, ModelRegistry, LakeResultStorage):
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
