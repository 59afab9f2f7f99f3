"""What the train stage shows in the Prefect UI: the training summary and the report's link."""

from __future__ import annotations

from blocks.registry import ModelRegistry
from tasks.records import ModelCandidate
from tasks.runtime.publish import artifact_key, publish_link, publish_markdown
from tasks.train.report import training_summary


def publish_training_summary(*, lake: str, candidate: ModelCandidate) -> None:
    """Rounds, best iteration, eval history, timings and workers of the candidate."""
    metadata = ModelRegistry(lake=lake).metadata(candidate.model_name, candidate.version)
    publish_markdown(
        key=artifact_key("training", candidate.model_name),
        markdown=training_summary(metadata, reused=candidate.reused),
        description=f"Model {candidate.model_name} version {candidate.version}",
    )


def publish_training_report_link(*, candidate: ModelCandidate, uri: str) -> None:
    publish_link(
        key=artifact_key("training-report", candidate.model_name),
        link=uri,
        description=f"Learning curves and feature importance of {candidate.model_name}"
        f"@{candidate.version}",
    )
