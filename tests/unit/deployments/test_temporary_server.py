"""The temporary API's app: Prefect's, with writes that lost a race on SQLite retried."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest

from deployments.temporary_server import RetryLostWrites

pytestmark = pytest.mark.timeout(30)

Message = MutableMapping[str, Any]


class Flaky:
    """An ASGI app that answers 503 ``fails`` times, then 201 with the body it was sent; with
    ``raises``, it raises after each 503, as Starlette does once its error handler answered."""

    def __init__(self, fails: int, raises: bool = False) -> None:
        self.fails = fails
        self.raises = raises
        self.calls = 0
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        self.calls += 1
        if scope["type"] != "http":
            return
        assert "matched" not in scope  # each try sees the request as it came
        scope["matched"] = True
        message = await receive()
        self.bodies.append(message.get("body", b""))
        status = 503 if self.calls <= self.fails else 201
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": self.bodies[-1]})
        if status == 503 and self.raises:
            raise RuntimeError("database is locked")


def call(app: Any, method: str, chunks: list[bytes]) -> list[Message]:
    incoming: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/api/flow_runs/"}
    asyncio.run(app(scope, receive, send))
    return sent


def test_a_write_that_lost_a_race_is_sent_again_with_its_whole_body() -> None:
    flaky = Flaky(fails=2)
    sent = call(RetryLostWrites(flaky, pauses=(0.0, 0.0, 0.0)), "POST", [b'{"a":', b"1}"])
    assert flaky.calls == 3 and flaky.bodies == [b'{"a":1}'] * 3
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 201 and sent[1]["body"] == b'{"a":1}'


def test_after_the_last_pause_the_client_gets_the_503() -> None:
    flaky = Flaky(fails=10)
    sent = call(RetryLostWrites(flaky, pauses=(0.0, 0.0)), "PATCH", [b"{}"])
    assert flaky.calls == 3 and sent[0]["status"] == 503


def test_reads_and_other_answers_pass_through_once() -> None:
    flaky = Flaky(fails=1)
    assert call(RetryLostWrites(flaky), "GET", [b""])[0]["status"] == 503
    assert flaky.calls == 1
    ok = Flaky(fails=0)
    assert call(RetryLostWrites(ok), "POST", [b"x"])[0]["status"] == 201
    assert ok.calls == 1


def test_the_error_starlette_raises_after_its_503_is_retried_then_raised_after_the_answer() -> None:
    flaky = Flaky(fails=1, raises=True)
    assert call(RetryLostWrites(flaky, pauses=(0.0,)), "POST", [b"x"])[0]["status"] == 201
    assert flaky.calls == 2
    always = Flaky(fails=10, raises=True)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"x", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/api/task_runs/"}
    with pytest.raises(RuntimeError, match="database is locked"):
        asyncio.run(RetryLostWrites(always, pauses=(0.0,))(scope, receive, send))
    assert always.calls == 2 and sent[0]["status"] == 503
