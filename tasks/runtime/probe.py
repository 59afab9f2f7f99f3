"""Reachability checks run before a stage starts anything, and the helpers they share.

A scheduler address that nobody answers, or a Kubernetes API that is not configured, fails
here in seconds with a message naming it, instead of deep inside a stage's cluster start.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from distributed.core import rpc

from blocks.cluster import DaskClusterConfig
from tasks.errors import ClusterError

T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T], *, timeout: float) -> T:
    """Run ``coroutine`` to completion within ``timeout`` seconds, in its own thread and
    event loop (the caller may be inside a loop already, as Prefect tasks can be)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coroutine, timeout)).result()


def describe_error(err: BaseException, timeout: float) -> str:
    """``err`` in one line; a bare timeout says how long was waited."""
    if isinstance(err, TimeoutError) and not str(err):
        return f"no answer within {timeout:g} s"
    return f"{type(err).__name__}: {err}"


def check_scheduler(address: str, *, timeout: float) -> None:
    """Fail with a clear error unless a Dask scheduler answers at ``address``."""
    # A plain TCP connect first: a refused or unresolvable address fails in milliseconds,
    # where the Dask client would keep retrying until its timeout.
    parts = urlsplit(address)
    try:
        socket.create_connection((parts.hostname or "", parts.port or 8786), timeout).close()
    except OSError as err:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {err}") from None
    # Then Dask's own handshake, bounded as a whole: a port that accepts connections but
    # is not a scheduler (a proxy, another service) would otherwise hang the client.
    try:
        identity = run_async(_scheduler_identity(address), timeout=timeout)
    except (OSError, TimeoutError) as err:
        raise ClusterError(
            f"no Dask scheduler answered at {address}: {describe_error(err, timeout)}"
        ) from None
    if identity.get("type") != "Scheduler":
        raise ClusterError(f"{address} is not a Dask scheduler (it is a {identity.get('type')})")


async def _scheduler_identity(address: str) -> dict[str, Any]:
    remote = rpc(address)
    try:
        return dict(await remote.identity())
    finally:
        await remote.close_rpc()


def check_kubernetes_api(namespace: str, *, timeout: float) -> None:
    """Fail with a clear error unless a Kubernetes API is configured and answers."""
    # Only Kubernetes mode needs the client (a dask-kubernetes dependency).
    import kr8s

    async def probe() -> None:
        api = await kr8s.asyncio.api(namespace=namespace)
        await api.version()

    try:
        run_async(probe(), timeout=timeout)
    except Exception as err:  # kr8s raises many kinds; all mean "no usable API"
        raise ClusterError(
            "cluster mode 'kubernetes' needs a reachable Kubernetes API (a kubeconfig via "
            f"KUBECONFIG or ~/.kube/config, or in-cluster credentials): "
            f"{describe_error(err, timeout)}"
        ) from None


def check_reachable(config: DaskClusterConfig) -> None:
    """Fail now, with a clear error, if the config's scheduler or Kubernetes API cannot be
    reached (a local cluster needs nothing)."""
    if config.mode == "address":
        check_scheduler(str(config.address), timeout=min(config.worker_timeout, 30))
    elif config.mode == "kubernetes":
        check_kubernetes_api(config.namespace, timeout=min(config.worker_timeout, 30))


def api_health(url: str, timeout: float = 5.0) -> str | None:
    """On a Dask worker: None when the Prefect API at ``url`` answers, else why not."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError as err:
        return f"{type(err).__name__}: {err}"
    return None if response.status_code == 200 else f"HTTP {response.status_code}"


def check_api_from_workers(client: Any, url: str) -> None:
    """Fail at once unless every worker of an existing cluster reaches the flow's API.

    Task runs report to the API the flow hands them; a worker that cannot reach it would
    fail each task late, and one given no API at all would start a server of its own.
    """
    problems = {
        worker: problem
        for worker, problem in client.run(api_health, url).items()
        if problem is not None
    }
    if not problems:
        return
    listed = "; ".join(f"{worker}: {problem}" for worker, problem in sorted(problems.items()))
    local = urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")
    hint = (
        "the embedded Prefect API listens on this machine only: start a Prefect server the "
        "workers can reach (prefect server start --host 0.0.0.0) and set PREFECT_API_URL to it"
        if local
        else "set PREFECT_API_URL to a Prefect server address the workers can reach"
    )
    raise ClusterError(
        f"{len(problems)} worker(s) of the existing cluster cannot reach the Prefect API at "
        f"{url} that this flow's task runs report to ({listed}); {hint}"
    )
