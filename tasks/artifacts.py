"""Prefect artifacts each stage publishes: what a run did, readable in the UI without logs."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.exceptions import MissingContextError

from tasks.models import IngestResult, ModelCandidate, PromotionDecision, ValidationReport
from tasks.validate import expectation_table, report_table


def _publish(create: Callable[..., Any], **kwargs: Any) -> None:
    """Create an artifact; a failure to publish is logged, never fails the run."""
    try:
        create(**kwargs)
    except Exception as err:  # the run's real work is done; a report is not worth failing it
        try:
            logger: Any = get_run_logger()
        except MissingContextError:  # after the run's context closed (see publish_link)
            logger = logging.getLogger(__name__)
        logger.warning("Could not publish artifact %s: %s", kwargs.get("key"), err)


def publish_link(*, key: str, link: str, description: str, flow_run_id: str | None = None) -> None:
    """A link artifact (e.g. to a report in the lake).

    ``flow_run_id`` attaches it to that flow run from outside the run's context (a stage's
    task runner writes its performance report after the flow run context has closed).
    """
    if flow_run_id is None:
        _publish(create_link_artifact, key=key, link=link, description=description)
    else:
        _publish(_create_run_link, key=key, link=link, description=description, run=flow_run_id)


def _create_run_link(*, key: str, link: str, description: str, run: str) -> None:
    from uuid import UUID

    from prefect.artifacts import LinkArtifact
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        client.create_artifact(
            ArtifactCreate(
                type="markdown",
                key=key,
                description=description,
                # The same markdown Prefect's own link artifacts hold.
                data=LinkArtifact(link=link).format(),
                flow_run_id=UUID(run),
            )
        )


def publish_table(*, key: str, table: list[dict[str, Any]], description: str) -> None:
    _publish(create_table_artifact, key=key, table=table, description=description)


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
    """Validation tables: per partition, and per expectation."""
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
    _publish(
        create_table_artifact,
        key=artifact_key("validation-expectations", report.dataset),
        table=expectation_table(report),
        description=(
            f"Expectations on {report.dataset} version {report.dataset_version}: "
            "per expectation, the partitions it failed in and the unexpected values"
        ),
    )


@task(name="publish-training-summary")
def publish_training_summary(*, lake: str, candidate: ModelCandidate) -> None:
    """Rounds, best iteration, eval history, timings and workers of the candidate."""
    from blocks.registry import ModelRegistry
    from tasks.reports import training_summary

    metadata = ModelRegistry(lake=lake).metadata(candidate.model_name, candidate.version)
    _publish(
        create_markdown_artifact,
        key=artifact_key("training", candidate.model_name),
        markdown=training_summary(metadata, reused=candidate.reused),
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
