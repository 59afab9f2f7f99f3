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
import psutil
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
    abandon = threading.Event()
    start = server.start if early is None else partial(_adopt, server, early, abandon)
    starting = threading.Thread(target=start, name="mlops-ephemeral-api", daemon=True)
    starting.start()
    try:
        yield
    except BaseException:
        abandon.set()  # the command ends here: no need to wait for a server it will stop
        raise
    finally:
        # Also when the block fails: a server half-started when this process exits would
        # outlive it (once started, Prefect stops it at exit).
        starting.join()


def _adopt(server: SubprocessASGIServer, early: EarlyApi, abandon: threading.Event) -> None:
    """Wait for ``early`` to answer, then make it Prefect's temporary server: the attributes
    ``SubprocessASGIServer.start`` sets for its own process, and its stop at exit. If it
    does not answer, stop it and let Prefect start its own (which reports why, if that
    fails too)."""
    try:
        problem = wait_until_healthy(
            early, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), abandon
        )
    except Exception as err:  # e.g. a restart that could not start a process
        problem = f"{type(err).__name__}: {err}"
    if problem or server.running:  # or something in this process started one meanwhile
        early.stop()
        if problem and not abandon.is_set():
            logger.warning("The temporary Prefect API started early did not come up (%s)", problem)
        return
    logger.info("Started temporary server on http://127.0.0.1:%d", early.port)
    server.port = early.port
    server.server_process = early.process
    server.running = True
    early.adopted = True
    atexit.register(server.stop)


def wait_until_healthy(early: EarlyApi, timeout: float, abandon: threading.Event) -> str | None:
    """None once ``early``'s process answers its health check on its port; else why not."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline and not abandon.is_set():
            if early.restart_on_port_taken():
                continue
            if (code := early.process.poll()) is not None:
                return f"the server process exited with status {code}"
            try:
                healthy = client.get(f"{early.url}/health").status_code == 200
            except httpx.TransportError:
                healthy = False
            if healthy and listens(early.process.pid, early.port):
                return None
            if healthy:  # another process answers on that port
                return f"port {early.port} is another process's"
            abandon.wait(0.05)
    return "abandoned" if abandon.is_set() else f"no answer within {timeout:g} s"


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` is the one listening on ``port``."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)
