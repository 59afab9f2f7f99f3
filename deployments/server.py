"""The Prefect API the commands talk to.

The server commands (``mlops setup``, ``mlops webhook serve``) first check that a Prefect
server is named, answers, and accepts this client's credentials: without that the gateway
would start, acknowledge signed notifications and then lose their events (Prefect's event
client drops what the server refuses, after logging it). The run commands, without a
server, start Prefect's temporary one early (:func:`ephemeral_api_started`).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING

import httpx
from prefect.client.orchestration import get_client
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_EPHEMERAL_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
)

from deployments.early_api import EarlyApi

if TYPE_CHECKING:
    from prefect.server.api.server import SubprocessASGIServer

logger = logging.getLogger("prefect.mlops")

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
def ephemeral_api_started(early: EarlyApi | None = None) -> Iterator[None]:
    """With no ``PREFECT_API_URL``, have Prefect's temporary API up when the block ends.

    A flow run without a server starts that API on its first call and waits for it: a
    uvicorn process that imports Prefect's server and opens its database, ~4.5 s here. The
    run commands start it first (``early``, :mod:`deployments.early_api`); here Prefect takes
    it over once it answers, while the block imports the flows and checks the spec. Without
    ``early`` it is started here, beside the block. Prefect keeps one temporary server per
    process, so the flow's first call finds this one (or, if this start failed, starts it
    again and reports why). With a server configured this does nothing, and stops ``early``.
    """
    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        if early is not None:
            early.stop()
        yield
        return
    # Imported here, and before the block: Prefect's server modules take ~2 s to import and
    # only this mode needs them in this process; imported beside the block's own imports,
    # the two would take turns on the interpreter lock.
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    start = server.start if early is None else partial(_adopt, server, early)
    starting = threading.Thread(target=start, name="mlops-ephemeral-api", daemon=True)
    starting.start()
    try:
        yield
    finally:
        # Also when the block fails: a server half-started when this process exits would
        # outlive it (once started, Prefect stops it at exit).
        starting.join()


def _adopt(server: SubprocessASGIServer, early: EarlyApi) -> None:
    """Wait for ``early`` to answer, then make it Prefect's temporary server: the attributes
    ``SubprocessASGIServer.start`` sets once its own process answers. If it does not
    answer, stop it and let Prefect start its own (which reports why, if it fails too)."""
    if server.running:  # something in this process started one already
        early.stop()
        return
    problem = wait_until_healthy(early, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    if problem:
        early.stop()
        logger.warning("The temporary Prefect API started early did not come up (%s)", problem)
        return
    logger.info("Started temporary server on http://127.0.0.1:%d", early.port)
    server.port = early.port
    server.server_process = early.process
    server.running = True
    early.adopted = True
    atexit.register(server.stop)


def wait_until_healthy(early: EarlyApi, timeout: float) -> str | None:
    """None once the API answers its health check; else why not."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if early.restart_on_port_taken():
                continue
            if (code := early.process.poll()) is not None:
                return f"the server process exited with status {code}"
            try:
                if client.get(f"{early.url}/health").status_code == 200:
                    return None
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    return f"no answer within {timeout:g} s"
