"""Promotions of one model, one at a time: a Prefect global concurrency limit of 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency


def promotion_limit_name(model_name: str) -> str:
    return f"mlops-promote-{model_name}"


@contextmanager
def promotion_lock(model_name: str, *, timeout: float = 3600) -> Iterator[None]:
    """Hold the only slot of a Prefect global concurrency limit for this model's promotions.

    Two promotions of one model must not interleave: each reads the champion, decides
    against it and moves the alias, and the second must decide against what the first left.
    The limit lives in the Prefect API, so it serializes flow runs on any machine that
    shares it (and processes sharing an ephemeral API's database).
    """

    name = promotion_limit_name(model_name)
    with get_client(sync_client=True) as client:
        # Idempotent; and a limit someone raised by hand would silently stop serializing.
        client.upsert_global_concurrency_limit_by_name(name, 1)
    with concurrency(name, occupy=1, timeout_seconds=timeout, strict=True):
        yield
