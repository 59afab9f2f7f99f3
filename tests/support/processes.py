"""Helpers for tests that start or watch real processes and ports."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time

import psutil


def free_port() -> int:
    """A TCP port nothing listens on right now (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], *, what: str) -> None:
    """Return once ``process`` accepts connections on ``port``; fail if it dies or stalls."""
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.2)


def forkserver_pid() -> int | None:
    """The multiprocessing forkserver of this process, if one was started (local Dask
    workers are forked from it; it lives as long as this process)."""
    import multiprocessing.forkserver

    return getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)


def dask_worker_processes() -> set[int]:
    """This test process's Dask worker processes (a LocalCluster forks or spawns them)."""
    server = forkserver_pid()
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        spawned = "multiprocessing" in cmdline and "spawn_main" in cmdline
        forked = "multiprocessing.forkserver" in cmdline and child.pid != server
        if spawned or forked:
            found.add(child.pid)
    return found


def stop_group(process: subprocess.Popen[bytes], *, grace: float = 20) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started."""
    import os
    import signal

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; its children (a worker's flow-run processes) may not be.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return


def wait_for_http(
    url: str, process: subprocess.Popen[bytes], *, what: str, timeout: float = 120
) -> None:
    """Return once ``url`` answers 200; fail if ``process`` dies or the timeout passes."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s")
        time.sleep(0.5)
