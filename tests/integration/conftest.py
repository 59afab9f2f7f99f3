from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _prefect(prefect_api: str) -> str:
    """Every end-to-end test talks to the session's temporary Prefect API."""
    return prefect_api
