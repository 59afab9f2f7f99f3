"""What the promote stage shows in the Prefect UI: the model card."""

from __future__ import annotations

from tasks.records import PromotionDecision
from tasks.runtime.publish import artifact_key, publish_markdown


def publish_model_card(*, dataset: str, markdown: str, decision: PromotionDecision) -> None:
    publish_markdown(
        key=artifact_key("model-card", dataset),
        markdown=markdown,
        description=f"{'Promoted' if decision.promoted else 'Not promoted'}: {decision.reason}",
    )
