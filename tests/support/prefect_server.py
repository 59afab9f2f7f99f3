"""A real ``prefect server start`` for the deployment tests, seen through its REST API, and
the helpers those tests share (a signed webhook post, an HTTP receiver for alerts)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from deployments.webhook import sign
from tests.support.paths import REPO

BIN = Path(sys.executable).parent
SECRET = "integration-secret-0123456789"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# `mlops setup --late-after`: short, so the late-run alert fires within the test.
LATE_AFTER_MINUTES = "0.2"


@dataclass(frozen=True)
class Server:
    api: str
    ui: str
    # What every client of it sets (PREFECT_API_URL, PREFECT_API_AUTH_STRING, ...).
    env: dict[str, str]
    checkout: Path
    logs: Path
    # The server's basic auth, ``user:password`` (its PREFECT_SERVER_API_AUTH_STRING).
    auth: str
    # Its database's SQLAlchemy URL; empty: SQLite under its PREFECT_HOME.
    database: str = ""

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            cwd=self.checkout,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        return subprocess.Popen(
            list(args),
            cwd=self.checkout,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped as a group, with what it started
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated request to the API, as every client of the server makes."""
        user, _, password = self.auth.partition(":")
        return httpx.request(
            method, f"{self.api}{path}", auth=(user, password), timeout=30, **kwargs
        )

    def get(self, path: str) -> Any:
        response = self.request("GET", path)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.request("POST", path, json=body)
        response.raise_for_status()
        return response.json()

    def deployment(self, flow: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/deployments/name/{flow}/{name}")
        return result

    def flow_runs(self, deployment_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.post(
            "/flow_runs/filter",
            {"deployments": {"id": {"any_": [deployment_id]}}, "limit": 50},
        )
        return result

    def wait_for_run(self, run_id: str, timeout: float = 400) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run: dict[str, Any] = self.get(f"/flow_runs/{run_id}")
            if run["state"]["type"] in TERMINAL:
                return run
            assert time.monotonic() < deadline, f"flow run still {run['state']['name']}"
            time.sleep(1)

    def events(self, name: str) -> list[dict[str, Any]]:
        since = "2000-01-01T00:00:00Z"
        page = self.post(
            "/events/filter",
            {"filter": {"event": {"name": [name]}, "occurred": {"since": since}}, "limit": 50},
        )
        events: list[dict[str, Any]] = page["events"]
        return events

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]


def checkout(target: Path) -> Path:
    """A copy of the repository's code and prefect.yaml, where the deployments run."""
    for folder in ("flows", "tasks", "blocks", "deployments", "datasets"):
        shutil.copytree(
            REPO / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "prefect.yaml", target / "prefect.yaml")
    return target


def signed_post(url: str, body: bytes, *, secret: str = SECRET, age: int = 0) -> httpx.Response:
    stamp = str(int(time.time()) - age)
    return httpx.post(
        url,
        content=body,
        headers={
            "X-Mlops-Timestamp": stamp,
            "X-Mlops-Signature": sign(secret, stamp, body),
            "Content-Type": "application/json",
        },
        timeout=30,
    )


@dataclass
class Receiver:
    """An HTTP endpoint that records every JSON body posted to it (the alerts' target)."""

    url: str
    received: list[dict[str, Any]]

    def wait_for(self, predicate: Any, *, timeout: float = 120) -> list[dict[str, Any]]:
        """The bodies matching ``predicate`` once there is at least one."""
        deadline = time.monotonic() + timeout
        while not (found := [b for b in list(self.received) if predicate(b)]):
            assert time.monotonic() < deadline, f"no matching notification in {self.received}"
            time.sleep(0.5)
        return found


@contextmanager
def receiver() -> Iterator[Receiver]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                received.append(json.loads(body))
            except json.JSONDecodeError:
                received.append({"raw": body.decode(errors="replace")})
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/alerts", received)
    finally:
        server.shutdown()
        server.server_close()


def events_socket(server: Server, path: str) -> str:
    """The websocket URL of ``/events/in`` or ``/events/out`` on ``server``."""
    return server.api.replace("http://", "ws://", 1) + path


def socket_session(url: str, *, subprotocol: bool, token: str | None, send: str) -> str:
    """Open an events socket as a client may (with or without Prefect's subprotocol; its
    auth message with ``token``, or none when None) and send ``send``. ``"accepted"`` when the
    server took it, else how it refused: the handshake's HTTP status or the close code."""
    from websockets import Subprotocol
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    protocols = [Subprotocol("prefect")] if subprotocol else None
    try:
        with connect(url, subprotocols=protocols, open_timeout=10) as socket:
            if subprotocol:
                auth = {"type": "auth"} if token is None else {"type": "auth", "token": token}
                socket.send(json.dumps(auth))
                reply = json.loads(socket.recv(timeout=10))
                if reply != {"type": "auth_success"}:
                    return f"reply {reply}"
            socket.send(send)
            # A server refusing it closes now; one that took it stays quiet.
            with suppress(TimeoutError):
                socket.recv(timeout=1)
            return "accepted"
    except InvalidStatus as err:
        return f"http {err.response.status_code}"
    except ConnectionClosed as err:
        return f"closed {err.rcvd.code if err.rcvd else None}"
