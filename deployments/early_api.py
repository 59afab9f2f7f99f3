"""Prefect's temporary API, started before the command imports Prefect.

With no server named, a flow's first call starts Prefect's temporary API: a uvicorn process
that imports Prefect's server and builds its app (about 4.5 s here), and only after the
calling process has itself imported Prefect (about 1 s) and Prefect's server modules (about
2 s, for the class that starts it). ``mlops run`` and ``mlops score`` start that same
process, with Prefect's own command line (its app wrapped by
:mod:`deployments.temporary_server`), as their first step, so it comes up on the other
core while they import Prefect, check their inputs and import the flows. Once Prefect is
imported, :func:`deployments.server.ephemeral_api_started` hands it to Prefect, which then
uses it as its own temporary server and stops it at exit; or stops it, if Prefect's settings
name a server after all (a profile can, where the environment does not).

Only the standard library here: this module runs before anything heavy is imported.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# What Prefect's SubprocessASGIServer gives its server process, besides this environment:
# no UI, only the services an ephemeral server runs, and the app built once.
SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}
# Where Prefect picks its temporary server's port: below the range the system hands out to
# outgoing connections, which could otherwise take the port before the server binds it.
PORTS = range(8000, 9000)
# uvicorn's exit status when its startup failed: a port another process took meanwhile, or
# Prefect's server failing to start.
STARTUP_FAILED = 3
RESTARTS = 2


def port_free(port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port of Prefect's range nothing listens on now, picked at random as Prefect does
    (two commands starting together rarely pick the same)."""
    candidates = list(PORTS)
    random.shuffle(candidates)
    for port in candidates[:50]:
        if port_free(port):
            return port
    raise OSError(f"no free port for Prefect's temporary API in {PORTS.start}-{PORTS.stop - 1}")


def server_command(port: int) -> list[str]:
    """Prefect's command for its temporary server (``SubprocessASGIServer``), with Prefect's
    app wrapped to retry writes that lost a race on SQLite
    (:mod:`deployments.temporary_server`); found without importing Prefect."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(Path(__file__).resolve().parent.parent),
        "--factory",
        "deployments.temporary_server:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]


@dataclass
class EarlyApi:
    """A temporary API server process this command started; ``adopted`` once Prefect owns it."""

    port: int
    process: subprocess.Popen[bytes]
    adopted: bool = field(default=False)
    restarts: int = field(default=0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def restart_on_port_taken(self) -> bool:
        """True (and started again on another port) when the process could not start
        because another process took its port; at most :data:`RESTARTS` times."""
        if self.process.poll() != STARTUP_FAILED or self.restarts >= RESTARTS:
            return False
        if port_free(self.port):  # the port is free: the server failed for another reason
            return False
        self.restarts += 1
        self.port = free_port()
        self.process = spawn_process(self.port)
        return True

    def stop(self) -> None:
        if self.adopted or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def spawn_process(port: int) -> subprocess.Popen[bytes]:
    # The server reads Prefect's settings itself, from this environment, working folder and
    # profile: the same sources this process's Prefect reads.
    return subprocess.Popen(server_command(port), env={**os.environ, **SERVER_ENV})


def named_server() -> bool:
    """Whether the environment names a Prefect API, or forbids a temporary one."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    allowed = os.environ.get("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
    enabled = os.environ.get("PREFECT_SERVER_EPHEMERAL_ENABLED", allowed)
    return enabled.strip().lower() in {"0", "false", "no", "off"}


@contextlib.contextmanager
def early_api() -> Iterator[EarlyApi | None]:
    """Start the temporary API now, unless the environment names a server; stop it when the
    block ends unless Prefect took it over (then Prefect stops it at exit)."""
    if named_server():
        yield None
        return
    port = free_port()
    early = EarlyApi(port=port, process=spawn_process(port))
    try:
        yield early
    finally:
        early.stop()
