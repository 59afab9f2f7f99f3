"""A notification block for any apprise URL, for alerts Prefect has no block type of its own
for (e-mail ``mailto://``, Telegram ``tgram://``, a JSON POST ``json://``, ...).

Prefect ships blocks for Slack, Teams, PagerDuty and a custom webhook, each built on apprise
but each checking its own kind of URL. This one takes any URL apprise understands. A
Prefect server loads it through the ``prefect.collections`` entry point in pyproject.toml,
so its automations can send through it when this package is installed beside the server.
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.notifications import AppriseNotificationBlock
from pydantic import Field, SecretStr, field_validator


class AppriseAlerts(AppriseNotificationBlock):
    """Send notifications to any apprise URL."""

    _block_type_name: ClassVar[str] = "MLOps Apprise Alerts"
    _description: ClassVar[str] = (
        "Any apprise URL: mailto://user:password@smtp.example.com?to=oncall@example.com, "
        "tgram://token/chat, json://host/path, slack://..."
    )

    url: SecretStr = Field(
        default=...,
        title="Apprise URL",
        description="Where notifications go, as an apprise URL (secret: it may hold a password).",
        examples=["mailto://user:password@smtp.example.com?to=oncall@example.com"],
    )

    @field_validator("url")
    @classmethod
    def _has_scheme(cls, value: SecretStr) -> SecretStr:
        scheme, sep, rest = value.get_secret_value().partition("://")
        if not sep or not scheme or not rest:
            raise ValueError("must be an apprise URL such as mailto://... or json://host/path")
        return value
