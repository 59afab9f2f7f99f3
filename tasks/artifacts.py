"""Prefect artifacts each stage publishes: what a run did, readable in the UI without logs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from tasks.models import IngestResult, ModelCandidate, PromotionDecision, ValidationReport
from tasks.validate import report_table


def _publish(create: Callable[..., Any], **kwargs: Any) -> None:
    """Create an artifact; a failure to publish is logged, never fails the run."""
    try:
        create(**kwargs)
    except Exception as err:  # the run's real work is done; a report is not worth failing it
        get_run_logger().warning("Could not publish artifact %s: %s", kwargs.get("key"), err)


def publish_link(*, key: str, link: str, description: str) -> None:
    """A link artifact (e.g. to a report in the lake)."""
    _publish(create_link_artifact, key=key, link=link, description=description)


def artifact_key(kind: str, dataset: str) -> str:
    """Stable keys (lowercase, digits, dashes) so every run's artifact lands in one series."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{kind}-{dataset}".lower()).strip("-")


@task(name="publish-ingest-summary")
def publish_ingest_summary(result: IngestResult) -> None:
    """Table of this run's partitions and quarantined files."""
    version = result.version
    new = set(result.new_partitions)
    rows = [
        {
            "source": p.source_uri.rsplit("/", 1)[-1],
            "status": "new" if p.partition_id in new else "unchanged",
            "partition": p.partition_id,
            "rows": p.rows,
            "bytes": p.bytes,
            "reason": "",
        }
        for p in version.partitions
    ] + [
        {
            "source": q.source_uri.rsplit("/", 1)[-1],
            "status": "quarantined",
            "partition": "",
            "rows": 0,
            "bytes": 0,
            "reason": q.reason,
        }
        for q in version.quarantined
    ]
    _publish(
        create_table_artifact,
        key=artifact_key("ingest", version.dataset),
        table=rows,
        description=(
            f"Dataset {version.dataset} version {version.version}: {version.rows:,} rows, "
            f"{len(version.partitions)} partitions ({len(new)} new), "
            f"{len(version.quarantined)} quarantined"
        ),
    )


@task(name="publish-validation-report")
def publish_validation_report(report: ValidationReport) -> None:
    """Per-partition validation table."""
    _publish(
        create_table_artifact,
        key=artifact_key("validation", report.dataset),
        table=report_table(report),
        description=(
            f"Validation of {report.dataset} version {report.dataset_version}: "
            f"{len(report.accepted)}/{report.total_files} files accepted "
            f"({report.accepted_fraction:.0%}, threshold {report.threshold:.0%}); "
            f"{'passed' if report.passed else 'FAILED'}. Full report: {report.report_uri}"
        ),
    )


@task(name="publish-training-summary")
def publish_training_summary(candidate: ModelCandidate) -> None:
    metrics = "\n".join(f"| {k} | {v:.6f} |" for k, v in sorted(candidate.metrics.items()))
    rows = ", ".join(f"{k} {v:,}" for k, v in candidate.rows.items())
    how = "Reused (same data and spec as an existing version)." if candidate.reused else "Trained."
    _publish(
        create_markdown_artifact,
        key=artifact_key("training", candidate.model_name),
        markdown=(
            f"# Training: {candidate.model_name} @ {candidate.version}\n\n{how}\n\n"
            f"- dataset version `{candidate.dataset_version}`\n- rows: {rows}\n"
            f"- best iteration: {candidate.best_iteration}\n- model: `{candidate.model_uri}`\n\n"
            f"| metric | test |\n| --- | --- |\n{metrics}\n"
        ),
        description=f"Model {candidate.model_name} version {candidate.version}",
    )


@task(name="publish-model-card")
def publish_model_card(*, dataset: str, markdown: str, decision: PromotionDecision) -> None:
    _publish(
        create_markdown_artifact,
        key=artifact_key("model-card", dataset),
        markdown=markdown,
        description=f"{'Promoted' if decision.promoted else 'Not promoted'}: {decision.reason}",
    )
