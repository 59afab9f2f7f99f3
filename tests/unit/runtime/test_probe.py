"""Reachability checks: an unreachable or wrong address fails fast and names it."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tasks.errors import ClusterError
from tasks.runtime.probe import check_api_from_workers, check_scheduler


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


@pytest.mark.timeout(60)
def test_workers_that_cannot_reach_the_flows_api_fail_at_once(
    dask_client: Any, prefect_api: str
) -> None:
    check_api_from_workers(dask_client, prefect_api)  # reachable: nothing to say
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable = f"http://127.0.0.1:{port}/api"
    with pytest.raises(ClusterError) as raised:
        check_api_from_workers(dask_client, unreachable)
    message = str(raised.value)
    assert f"2 worker(s) of the existing cluster cannot reach the Prefect API at {unreachable}" in (
        message
    )
    assert "ConnectError" in message and "set PREFECT_API_URL" in message
    assert "prefect server start --host 0.0.0.0" in message
