"""The temporary API's app: Prefect's, with writes that lost a race on SQLite retried.

The app under the middleware is a FastAPI app built as Prefect builds its server (an API
mounted under ``/api``, a catch-all exception handler answering 503 for retryable database
errors, which Starlette raises again after answering); its route fails with SQLite's own
errors, produced by a real database.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from deployments.temporary_server import RetryLostWrites, lost_race

pytestmark = pytest.mark.timeout(30)

Message = MutableMapping[str, Any]


def sqlite_error(folder: Path, *, committed: bool) -> sqlalchemy.exc.OperationalError:
    """SQLite's refusal as Prefect's server sees it (wrapped by SQLAlchemy): a write whose
    transaction read before another write took the lock, which has ``committed`` since
    (``SQLITE_BUSY_SNAPSHOT``) or still holds it (``SQLITE_BUSY``, as at the end of a busy
    wait)."""
    path = folder / f"race-{committed}.db"
    path.unlink(missing_ok=True)
    first = sqlite3.connect(path, isolation_level=None, timeout=0)
    second = sqlite3.connect(path, isolation_level=None, timeout=0)
    first.execute("PRAGMA journal_mode=WAL")
    first.execute("CREATE TABLE runs (id INTEGER)")
    try:
        first.execute("BEGIN DEFERRED")
        first.execute("SELECT * FROM runs").fetchall()
        second.execute("BEGIN IMMEDIATE")
        second.execute("INSERT INTO runs VALUES (1)")
        if committed:
            second.execute("COMMIT")
        first.execute("INSERT INTO runs VALUES (2)")
    except sqlite3.OperationalError as refused:
        return sqlalchemy.exc.OperationalError("INSERT INTO runs", {}, refused)
    finally:
        first.close()
        second.close()
    raise AssertionError("SQLite did not refuse the write")


def prefect_like_app(failures: list[Exception]) -> tuple[FastAPI, list[bytes]]:
    """An API under /api whose POST raises each of ``failures`` once, then answers 201
    with the body it got; errors are answered 503, as Prefect's handler does."""
    bodies: list[bytes] = []

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"exception_message": "Service Unavailable"}, status_code=503)

    # Prefect gives its API app the handlers, and mounts it in the app uvicorn serves.
    api = FastAPI(exception_handlers={Exception: unavailable})

    @api.post("/flow_runs/")
    async def create(request: Request) -> JSONResponse:
        bodies.append(await request.body())
        if failures:
            raise failures.pop(0)
        return JSONResponse({"got": bodies[-1].decode()}, status_code=201)

    app = FastAPI()
    app.mount("/api", api)
    return app, bodies


def post(app: Any, body: str) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.post("/api/flow_runs/", content=body)

    return asyncio.run(send())


def test_sqlite_errors_are_told_apart(tmp_path: Path) -> None:
    snapshot = sqlite_error(tmp_path, committed=True)
    locked = sqlite_error(tmp_path, committed=False)
    assert getattr(snapshot.orig, "sqlite_errorname", None) == "SQLITE_BUSY_SNAPSHOT"
    assert getattr(locked.orig, "sqlite_errorname", None) == "SQLITE_BUSY"
    assert lost_race(snapshot) and lost_race(snapshot, at_once=False)
    # A lock still held: refused at once, the write lost a race; after the wait, it did not.
    assert lost_race(locked) and not lost_race(locked, at_once=False)
    assert not lost_race(RuntimeError("database is locked"))


@pytest.mark.parametrize("committed", [True, False])
def test_a_write_that_lost_a_race_is_sent_again_with_its_whole_body(
    tmp_path: Path, committed: bool
) -> None:
    app, bodies = prefect_like_app([sqlite_error(tmp_path, committed=committed)] * 2)
    answer = post(RetryLostWrites(app, pauses=(0.0, 0.0, 0.0)), '{"name": "ingest"}')
    assert answer.status_code == 201 and answer.json() == {"got": '{"name": "ingest"}'}
    assert bodies == [b'{"name": "ingest"}'] * 3


def test_after_the_last_pause_the_client_gets_the_503(tmp_path: Path) -> None:
    app, bodies = prefect_like_app([sqlite_error(tmp_path, committed=True)] * 5)
    answer = post(RetryLostWrites(app, pauses=(0.0, 0.0)), "{}")
    assert answer.status_code == 503 and len(bodies) == 3


def test_other_503s_go_to_the_client_as_they_are(tmp_path: Path) -> None:
    """A lock still held after SQLite's wait (here: any refusal counts as after it), or any
    other error: answered once, not retried (Prefect's client backs off and asks again)."""
    waited = (sqlite_error(tmp_path, committed=False), 0.0)
    for error, at_once in (waited, (RuntimeError("boom"), 1.0)):
        app, bodies = prefect_like_app([error])
        assert post(RetryLostWrites(app, at_once=at_once), "{}").status_code == 503
        assert len(bodies) == 1


def test_a_refusal_that_came_after_a_wait_is_not_retried(tmp_path: Path) -> None:
    """``SQLITE_BUSY`` is a lost race only when SQLite refused at once; the same error at
    the end of a wait (here: an app that takes longer than ``at_once`` to fail) is not."""
    error = sqlite_error(tmp_path, committed=False)
    bodies: list[bytes] = []

    async def slow(scope: Message, receive: Any, send: Any) -> None:
        bodies.append((await receive())["body"])
        await asyncio.sleep(0.2)
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        raise error

    assert post(RetryLostWrites(slow, pauses=(0.0,), at_once=0.1), "{}").status_code == 503
    assert bodies == [b"{}"]
    bodies.clear()
    assert post(RetryLostWrites(slow, pauses=(0.0,), at_once=5.0), "{}").status_code == 503
    assert bodies == [b"{}", b"{}"]  # refused "at once" by this measure: tried again


def test_reads_pass_through_and_a_client_gone_mid_body_calls_nothing() -> None:
    calls: list[str] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        calls.append(scope["method"])
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"na', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    middleware = RetryLostWrites(app, pauses=(0.0,))
    asyncio.run(middleware({"type": "http", "method": "POST", "path": "/"}, receive, send))
    assert calls == [] and sent == []
    asyncio.run(middleware({"type": "http", "method": "GET", "path": "/"}, receive, send))
    assert calls == ["GET"] and sent[0]["status"] == 503
