"""The Prefect API the commands talk to.

The server commands (``mlops setup``, ``mlops webhook serve``) first check that a Prefect
server is named, answers, and accepts this client's credentials: without that the gateway
would start, acknowledge signed notifications and then lose their events (Prefect's event
client drops what the server refuses, after logging it). The run commands, without a
server, start Prefect's temporary one early (:func:`ephemeral_api_started`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def ephemeral_api_started() -> Iterator[None]:
    """With no ``PREFECT_API_URL``, start Prefect's temporary API when the block begins and
    have it up when the block ends.

    A flow run without a server starts that API on its first call and waits for it: a
    uvicorn process that imports Prefect's server and opens its database, ~5 s here. Started
    before the command imports the flows and checks the spec's expectations (GX's import,
    ~3 s), it comes up meanwhile, on the other core. Prefect keeps one temporary server per
    process, so the flow's first call finds this one (or, if this start failed, starts it
    again and reports why). With a server configured this does nothing.
    """
    if PREFECT_API_URL.value():
        yield
        return
    # Imported here, and before the block: Prefect's server modules take ~2.5 s to import and
    # only this mode needs them in this process; imported beside the block's own imports,
    # the two would take turns on the interpreter lock and the server process would start late.
    from prefect.server.api.server import SubprocessASGIServer

    starting = threading.Thread(
        target=SubprocessASGIServer().start, name="mlops-ephemeral-api", daemon=True
    )
    starting.start()
    try:
        yield
    finally:
        # Also when the block fails: a server half-started when this process exits would
        # outlive it (once started, Prefect stops it at exit).
        starting.join()
