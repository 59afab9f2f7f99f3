"""The temporary Prefect API the run commands start before they import Prefect."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psutil
import pytest

from deployments.early_api import (
    PORTS,
    EarlyApi,
    early_api,
    free_port,
    named_server,
    server_command,
    spawn_process,
)

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[3]


def test_a_server_named_in_the_environment_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert named_server()
    with early_api() as early:
        assert early is None
    monkeypatch.delenv("PREFECT_API_URL")
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_ENABLED", "false")
    assert named_server()


def test_the_command_is_prefects_own() -> None:
    """Prefect's SubprocessASGIServer command and options, whose process Prefect is then
    handed; only the app factory differs, and it serves Prefect's app."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer(port=1)
    try:
        process = server._run_uvicorn_command()
        process.kill()
        process.wait()
        prefects = list(process.args)
    finally:
        server.stop()
    ours = server_command(1)
    factory = ours.index("--factory") + 1
    assert ours[factory] == "deployments.temporary_server:create_app"
    assert prefects[factory] == "prefect.server.api.server:create_app"
    app_dir = ours.index("--app-dir") + 1
    assert (Path(ours[app_dir]) / "deployments" / "temporary_server.py").is_file()
    for differs in (factory, app_dir):
        ours[differs] = prefects[differs]
    assert ours == prefects


def test_a_server_named_by_prefects_settings_stops_the_early_one(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment names no server, Prefect's settings do (a profile can): the process
    started early is stopped, not left running."""
    from deployments.server import ephemeral_api_started

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with early_api() as early:
        assert early is not None
        with ephemeral_api_started(early):
            pass
        assert early.process.poll() is not None
        assert not early.adopted


def test_prefect_adopts_the_early_server_and_stops_it_at_exit(tmp_path: Path) -> None:
    """A fresh process with no server named: Prefect's client uses the server started early
    as its temporary server (flows run on it), and stops it when the process exits."""
    script = textwrap.dedent(
        """
        import json
        from deployments.early_api import early_api
        with early_api() as early:
            from deployments.server import ephemeral_api_started
            with ephemeral_api_started(early):
                from prefect import flow
                from prefect.client.orchestration import get_client
            @flow
            def answer() -> int:
                return 42
            result = answer()
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs()
                url = str(client.api_url)
        print(json.dumps({"port": early.port, "pid": early.process.pid, "url": url,
                          "result": result, "runs": len(runs), "adopted": early.adopted}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "0"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["adopted"] and seen["result"] == 42 and seen["runs"] == 1
    assert f"127.0.0.1:{seen['port']}/api" in seen["url"]
    assert "Stopping temporary server" in done.stderr
    assert not psutil.pid_exists(seen["pid"]) or (
        psutil.Process(seen["pid"]).status() == psutil.STATUS_ZOMBIE
    )


@contextlib.contextmanager
def listening(port: int) -> Iterator[socket.socket]:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield sock


def test_a_port_taken_before_the_server_binds_it_gets_another_port() -> None:
    """Another process listens on the port first: uvicorn fails its start, and the server
    is started again on another port of Prefect's range, and answers there."""
    from deployments.server import wait_until_healthy

    port = free_port()
    assert port in PORTS
    with listening(port):
        early = EarlyApi(port=port, process=spawn_process(port))
        try:
            assert wait_until_healthy(early, 110, threading.Event()) is None
            assert early.restarts == 1 and early.port != port and early.port in PORTS
        finally:
            early.stop()
    assert early.process.poll() is not None


def test_a_health_answer_from_another_process_is_not_taken_for_ours() -> None:
    from deployments.server import wait_until_healthy

    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    other = HTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        early = EarlyApi(port=other.server_address[1], process=sleeper)
        problem = wait_until_healthy(early, 10, threading.Event())
        assert problem == f"port {early.port} is another process's"
        abandon = threading.Event()
        abandon.set()
        assert wait_until_healthy(early, 10, abandon) == "abandoned"
    finally:
        other.shutdown()
        sleeper.kill()
        sleeper.wait()
