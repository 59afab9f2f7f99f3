"""The webhook gateway's routing and allowlist, saved once and shared by its replicas.

``mlops webhook serve --config-block NAME`` loads it; options on the command line add to it.
The parsing of the command line's ``PREFIX=NAME`` pairs and allowlist prefixes lives here
too, so a block and a command line are held to the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, field_validator, model_validator

DATASET_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # the spec's rule for dataset names


def parse_datasets(pairs: Sequence[str], *, option: str = "--dataset") -> dict[str, str]:
    """``s3://bucket/prefix/=name`` options into a prefix → dataset map.

    ``--scoring`` prefixes may also be local paths: generic notifications name any path.
    """
    out = {}
    for pair in pairs:
        prefix, sep, name = pair.rpartition("=")
        valid_prefix = prefix.startswith("s3://") or (option == "--scoring" and bool(prefix))
        if not sep or not valid_prefix or not re.match(DATASET_NAME, name):
            expected = (
                "s3://bucket/prefix/" if option == "--dataset" else "s3://bucket/prefix/ or a path"
            )
            raise ValueError(f"{option} {pair!r}: expected {expected}=dataset-name")
        out[prefix] = name
    return out


def parse_allowed(prefixes: Sequence[str]) -> tuple[str, ...]:
    """``--allow-source`` prefixes: an s3:// prefix or an absolute path, without ``..``."""
    out = []
    for prefix in prefixes:
        remote = prefix.startswith(("s3://", "s3a://", "file://"))
        if not (remote or prefix.startswith("/")) or ".." in prefix.split("/"):
            raise ValueError(
                f"--allow-source {prefix!r}: expected s3://bucket/prefix/ or an absolute path"
            )
        out.append(prefix)
    return tuple(out)


class WebhookGatewayConfig(Block):
    """Where the webhook gateway's notifications may point, and which dataset they feed."""

    _block_type_name: ClassVar[str] = "MLOps Webhook Gateway"
    _description: ClassVar[str] = (
        "Routing and source allowlist of the mlops webhook gateway (mlops webhook serve "
        "--config-block NAME)."
    )

    allowed_sources: list[str] = Field(
        default_factory=list,
        description="Locations notifications may name (s3://bucket/prefix/ or an absolute "
        "path); anything else is refused with 403.",
    )
    allow_any_source: bool = Field(
        False, description="Accept any location a signed sender names (no allowlist)."
    )
    datasets: dict[str, str] = Field(
        default_factory=dict, description="S3 landing prefix → dataset name (training files)."
    )
    scoring: dict[str, str] = Field(
        default_factory=dict,
        description="Prefix (s3:// or a path) → dataset whose champion scores the files.",
    )
    secret_block: str | None = Field(
        None, description="Prefect Secret block with the shared secret (else the environment)."
    )

    @field_validator("allowed_sources")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        return list(parse_allowed(value))

    @field_validator("datasets")
    @classmethod
    def _training(cls, value: dict[str, str]) -> dict[str, str]:
        return parse_datasets([f"{k}={v}" for k, v in value.items()])

    @field_validator("scoring")
    @classmethod
    def _scoring(cls, value: dict[str, str]) -> dict[str, str]:
        return parse_datasets([f"{k}={v}" for k, v in value.items()], option="--scoring")

    @model_validator(mode="after")
    def _one_way_to_allow(self) -> WebhookGatewayConfig:
        if self.allow_any_source and self.allowed_sources:
            raise ValueError("give allowed_sources or allow_any_source, not both")
        return self

    def with_options(
        self,
        *,
        allowed_sources: Sequence[str] = (),
        allow_any_source: bool = False,
        datasets: Sequence[str] = (),
        scoring: Sequence[str] = (),
        secret_block: str | None = None,
    ) -> WebhookGatewayConfig:
        """This configuration with the command line's options added (the latter win)."""
        return WebhookGatewayConfig(
            allowed_sources=[*self.allowed_sources, *parse_allowed(allowed_sources)],
            allow_any_source=self.allow_any_source or allow_any_source,
            datasets={**self.datasets, **parse_datasets(datasets)},
            scoring={**self.scoring, **parse_datasets(scoring, option="--scoring")},
            secret_block=secret_block or self.secret_block,
        )
