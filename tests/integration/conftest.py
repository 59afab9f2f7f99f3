from __future__ import annotations

import json
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _prefect(prefect_api: str) -> str:
    """Every flow test talks to the session's temporary Prefect API."""
    return prefect_api


def read_artifact(key: str) -> Any:
    """The latest artifact with ``key``, read back through the Prefect API (tables decoded)."""
    from prefect.artifacts import Artifact

    artifact = Artifact.get(key)
    assert artifact is not None, f"no artifact {key!r}"
    data = artifact.data
    if artifact.type == "table" and isinstance(data, str):
        return json.loads(data), artifact
    return data, artifact
