"""Helpers for tests that start or watch real processes and ports."""

from __future__ import annotations

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


def dask_worker_processes() -> set[int]:
    """This test process's Dask worker processes (a LocalCluster spawns them)."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "multiprocessing" in cmdline and "spawn_main" in cmdline:
            found.add(child.pid)
    return found
