"""The app of the temporary Prefect API the run commands start: Prefect's own, with writes
that lost a race on SQLite retried at once.

Prefect's server answers 503 when SQLite refuses a write because its transaction read
before writing and, meanwhile, another write took the database's write lock: SQLite refuses
it at once, without waiting (``database is locked``), as ``SQLITE_BUSY_SNAPSHOT`` when the
other write has committed and ``SQLITE_BUSY`` while it still holds the lock
(PrefectHQ/prefect#18934). In a run that is typically a subflow's creation, or its first
task run's, against the recording of the task runs just before it. Prefect's client then
waits 2 s before it asks again (then 4, 8, ... s), which an embedded run paid at its first
stage and sometimes at others. The other write is over by the time the request is tried
again, so this app tries such a write again itself, after 50, 100, 200 and 400 ms, and only
then answers 503, to a client that then waits as it always does. The refused transaction
is rolled back (by SQLAlchemy's session, as the error leaves it), so the retry is the
request Prefect's client would send, well within its timeout: the attempts before the last
were each refused within a second. Other 503s go to the client as they are: a lock still held after
SQLite's 60 s wait (also ``SQLITE_BUSY``, told apart by the time the request took) or a
database error.

GET, HEAD and OPTIONS requests, websockets (events, logs) and the app's lifespan pass
straight through; other requests (writes, and the POST ``/filter`` reads) are read whole
before the app is called, and its answer is sent once it is final.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prefect.server.api.server import create_app as prefect_app

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

RETRY_PAUSES = (0.05, 0.1, 0.2, 0.4)
# A refusal within this time was at once: SQLite's busy wait (60 s in Prefect's server) was
# not what ended it.
REFUSED_AT_ONCE_S = 1.0
UNAVAILABLE = 503
READS = frozenset({"GET", "HEAD", "OPTIONS"})


class RetryLostWrites:
    """ASGI middleware: a write answered 503 because it lost a race on SQLite is sent to the
    app again after each pause."""

    def __init__(
        self,
        app: App,
        pauses: tuple[float, ...] = RETRY_PAUSES,
        at_once: float = REFUSED_AT_ONCE_S,
    ) -> None:
        self.app = app
        self.pauses = pauses
        self.at_once = at_once

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READS:
            await self.app(scope, receive, send)
            return
        body = await _whole_body(receive)
        if body is None:  # the client went away before it had sent its request
            return
        loop = asyncio.get_running_loop()
        for pause in (*self.pauses, None):
            answer: list[Message] = []
            started = loop.time()
            try:
                # A copy each time: routing writes what it matched into the scope.
                await self.app(dict(scope), _replay(body, receive), _collect(answer))
            except Exception as error:
                # Starlette raises the error again once its handler has answered; a 503
                # for a lost race that will be tried again is dropped with it.
                at_once = loop.time() - started < self.at_once
                if pause is None or not (_unavailable(answer) and lost_race(error, at_once)):
                    await _send_all(answer, send)
                    raise
            else:
                break
            await asyncio.sleep(pause)
        await _send_all(answer, send)


def lost_race(error: BaseException, at_once: bool = True) -> bool:
    """Whether SQLite refused this write because another one took the write lock after its
    read: ``SQLITE_BUSY_SNAPSHOT``, or ``SQLITE_BUSY`` refused ``at_once`` (not at the end
    of the busy wait), found in the error or what caused it (SQLAlchemy keeps SQLite's own
    error as ``orig``)."""
    wanted = {"SQLITE_BUSY_SNAPSHOT", *(["SQLITE_BUSY"] if at_once else [])}
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        errorname = getattr(current, "sqlite_errorname", None)
        if isinstance(current, sqlite3.OperationalError) and errorname in wanted:
            return True
        orig = getattr(current, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None]
        todo += [current.__cause__, current.__context__]
    return False


def _unavailable(answer: list[Message]) -> bool:
    return bool(answer) and answer[0].get("status") == UNAVAILABLE


async def _send_all(answer: list[Message], send: Send) -> None:
    for message in answer:
        await send(message)


async def _whole_body(receive: Receive) -> bytes | None:
    """The request's body; None if the client disconnected before sending all of it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The request's body once; after that, whatever the client does next (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _collect(answer: list[Message]) -> Send:
    async def collect(message: Message) -> None:
        answer.append(message)

    return collect


def create_app() -> App:
    """Prefect's server app (``prefect.server.api.server:create_app``), wrapped: the factory
    uvicorn is given by :func:`deployments.early_api.server_command`."""
    app: App = prefect_app()
    return RetryLostWrites(app)
