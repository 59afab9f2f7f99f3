"""Prefect artifacts read back through the API, as the UI shows them."""

from __future__ import annotations

import json
from typing import Any

from prefect.artifacts import Artifact


def read_artifact(key: str) -> Any:
    """The latest artifact with ``key``, read back through the Prefect API (tables decoded)."""
    artifact = Artifact.get(key)
    assert artifact is not None, f"no artifact {key!r}"
    data = artifact.data
    if artifact.type == "table" and isinstance(data, str):
        return json.loads(data), artifact
    return data, artifact
