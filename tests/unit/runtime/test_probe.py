"""Reachability checks: an unreachable or wrong address fails fast and names it."""

from __future__ import annotations

import socket

import pytest

from tasks.errors import ClusterError
from tasks.runtime.probe import check_scheduler


@pytest.mark.timeout(30)
def test_unreachable_scheduler_fails_fast_with_the_address() -> None:
    # A port nothing listens on: bind, read the port, close.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {address}"):
        check_scheduler(address, timeout=2)


@pytest.mark.timeout(30)
def test_a_port_that_is_not_a_dask_scheduler_is_a_clear_error() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        message = f"no Dask scheduler answered at {address}: no answer within 2 s"
        with pytest.raises(ClusterError, match=message):
            check_scheduler(address, timeout=2)


@pytest.mark.timeout(60)
def test_a_running_scheduler_passes_the_check(dask_client) -> None:  # type: ignore[no-untyped-def]
    check_scheduler(dask_client.scheduler.address, timeout=10)
