"""The check the server commands (``mlops setup``, ``mlops webhook serve``) make first: a
Prefect server is named, answers, and accepts this client's credentials.

Without it the gateway would start, acknowledge signed notifications and then lose their
events: Prefect's event client drops what the server refuses, after logging it.
"""

from __future__ import annotations

import httpx
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

AUTH_HINT = (
    "set PREFECT_API_AUTH_STRING to the server's PREFECT_SERVER_API_AUTH_STRING (user:password)"
)


def server_problem() -> str | None:
    """Why this process cannot use the Prefect server it is configured for (None: it can)."""
    url = PREFECT_API_URL.value()
    if not url:
        return "set PREFECT_API_URL to the Prefect server (e.g. http://127.0.0.1:4200/api)"
    try:
        with get_client(sync_client=True) as client:
            # An authenticated route: /health answers everyone, even with auth on.
            client.api_version()
    except httpx.HTTPStatusError as err:
        status = err.response.status_code
        if status == 401:
            return f"the Prefect server at {url} refused this client's credentials: {AUTH_HINT}"
        return f"the Prefect server at {url} answered {status}: {err.response.text[:200]}"
    except httpx.HTTPError as err:
        return f"cannot reach the Prefect server at {url}: {type(err).__name__}: {err}"
    return None
