"""Publishing basics: Prefect artifacts with stable keys, and links to pages in the lake.

What a run did should be readable in the Prefect UI without its logs; each stage builds its
own tables and cards (``tasks/<stage>/publish.py``) and publishes them through these. A
failure to publish is logged and never fails the run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    LinkArtifact,
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.exceptions import MissingContextError


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


def publish_markdown(*, key: str, markdown: str, description: str) -> None:
    _publish(create_markdown_artifact, key=key, markdown=markdown, description=description)


def artifact_key(kind: str, dataset: str) -> str:
    """Stable keys (lowercase, digits, dashes) so every run's artifact lands in one series."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{kind}-{dataset}".lower()).strip("-")
