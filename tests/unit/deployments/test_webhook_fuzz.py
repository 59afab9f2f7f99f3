"""The webhook gateway under random input (hypothesis): thousands of random bodies, headers
and signatures give no server error, and no event is emitted for anything that is not
validly signed, fresh and allowlisted. A flood of unique signed requests keeps the replay
guard's memory bounded; bodies at and past the limit; a slow client blocks nobody."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from deployments.webhook import Gateway, Rejected, create_app, sign
from tests.support.processes import free_port
from tests.support.webhooks import Recorder

# `make test` gives each xdist worker whole modules (--dist loadfile), in order: the count
# test reads the property's counts.
pytestmark = pytest.mark.timeout(300)
SECRET = "fuzz-secret-0123456789abcdef"
ALLOWED = ("s3://lake-bucket/landing/", "/data/landing/")
NOW = 1_800_000_000


def gateway(emitted: Recorder, **options: Any) -> Gateway:
    return Gateway(
        secret=SECRET,
        emit=emitted,
        datasets={"s3://lake-bucket/landing/": "customers", "/data/landing/": "customers"},
        allowed_sources=ALLOWED,
        max_body=4096,
        clock=lambda: NOW,
        **options,
    )


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[TestClient, Recorder]]:
    emitted = Recorder()
    with TestClient(create_app(gateway(emitted)), raise_server_exceptions=False) as client:
        yield client, emitted


# Locations a sender may name: allowed ones, their neighbours, traversal, junk.
locations = st.one_of(
    st.sampled_from(
        [
            "s3://lake-bucket/landing/a.csv",
            "s3://lake-bucket/landing/",
            "/data/landing/part-1.parquet",
            "s3://lake-bucket/landing-not/x.csv",
            "s3://lake-bucket/other/x.csv",
            "s3://evil/landing/x.csv",
            "/data/landing/../../etc/passwd",
            "/etc/passwd",
            "",
        ]
    ),
    st.text(max_size=80),
)
generic = st.fixed_dictionaries(
    {
        "dataset": st.one_of(st.just("customers"), st.just("customers"), st.text(max_size=20)),
        "source_uri": locations,
    },
    optional={
        "purpose": st.one_of(st.sampled_from(["training", "scoring"]), st.text(max_size=10)),
        "files": st.lists(locations, max_size=4),  # not a field: refused as a whole
    },
)
s3_record = st.fixed_dictionaries(
    {
        "eventSource": st.sampled_from(["aws:s3", "aws:sqs", ""]),
        "eventName": st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete", "x"]),
        "s3": st.fixed_dictionaries(
            {
                "bucket": st.fixed_dictionaries(
                    {"name": st.sampled_from(["lake-bucket", "evil", "ab", "x" * 70])}
                ),
                "object": st.fixed_dictionaries(
                    {
                        "key": st.one_of(
                            st.sampled_from(["landing/a.csv", "other/b.csv", "landing/../c"]),
                            st.text(max_size=40),
                        ),
                        "size": st.integers(-5, 10**12),
                    }
                ),
            }
        ),
    }
)
s3 = st.fixed_dictionaries({"Records": st.lists(s3_record, max_size=3)})
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Well-formed notifications naming a location near the allowlist's edge.
well_formed = st.fixed_dictionaries(
    {
        "dataset": st.just("customers"),
        "source_uri": st.sampled_from(
            [
                "/data/landing/a.csv",
                "/data/landing/b/",
                "s3://lake-bucket/landing/c.parquet",
                "/data/landingX/a.csv",
                "/data/land",
                "s3://lake-bucket/landing",
            ]
        ),
    },
    optional={"purpose": st.sampled_from(["training", "scoring"])},
)
bodies = st.one_of(
    well_formed.map(lambda d: json.dumps(d).encode()),
    generic.map(lambda d: json.dumps(d).encode()),
    s3.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=600),
    st.integers(4000, 6000).map(lambda n: b'{"source_uri": "' + b"a" * n + b'"}'),
)
# Half of the requests validly signed, so that many reach the allowlist and payload checks.
signing = st.sampled_from(
    ["valid"] * 5 + ["wrong-secret", "random", "missing", "stale", "garbled-time"]
)


def headers_for(how: str, body: bytes, nonce: int) -> dict[str, str]:
    stamp = str(NOW - nonce % 200)  # within the window; distinct signatures per request
    if how == "stale":
        stamp = str(NOW - 3600)
    signature = {
        "valid": sign(SECRET, stamp, body),
        "wrong-secret": sign("another-secret-0123456789", stamp, body),
        "random": "sha256=" + "0" * 64,
        "missing": "",
        "stale": sign(SECRET, stamp, body),
        "garbled-time": sign(SECRET, stamp, body),
    }[how]
    headers = {"Content-Type": "application/json", "X-Mlops-Timestamp": stamp}
    if how == "garbled-time":
        headers["X-Mlops-Timestamp"] = f"{stamp}.5"
    if signature:
        headers["X-Mlops-Signature"] = signature
    return headers


def allowed(uri: str) -> bool:
    return any(uri.startswith(p) for p in ALLOWED)


SENT = {"requests": 0, "server_errors": 0, "events": 0}


@settings(
    max_examples=2000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    source=st.sampled_from(["s3", "generic", "generic", "nope"]),
    body=bodies,
    how=signing,
    nonce=st.integers(0, 10**9),
)
def test_random_requests_never_fail_the_server_nor_emit_what_is_not_signed_and_allowed(
    fuzzed: tuple[TestClient, Recorder], source: str, body: bytes, how: str, nonce: int
) -> None:
    client, emitted = fuzzed
    before = len(emitted.arrivals)
    response = client.post(f"/hooks/{source}", content=body, headers=headers_for(how, body, nonce))
    SENT["requests"] += 1
    SENT["server_errors"] += response.status_code >= 500
    assert response.status_code < 500, (response.status_code, body[:200])
    new = emitted.arrivals[before:]
    SENT["events"] += len(new)
    if new:
        assert how == "valid" and response.status_code == 202 and source in ("s3", "generic")
        for arrival in new:
            assert allowed(arrival.source), arrival
            assert all(allowed(uri) for uri in arrival.objects), arrival
            assert ".." not in arrival.source.split("/"), arrival
    else:
        assert response.status_code != 202 or response.json() == {"events": []}


def test_the_fuzzing_sent_thousands_and_some_got_through() -> None:
    """Run after the property above (same module): its counts, for the closing note too."""
    print(f"fuzz: {SENT}")
    assert SENT["requests"] >= 2000 and SENT["server_errors"] == 0
    assert SENT["events"] >= 25  # the strategies do reach the accepting path


def test_a_flood_of_unique_signed_requests_keeps_the_replay_guard_bounded() -> None:
    emitted = Recorder()
    now = [float(NOW)]
    flood = Gateway(
        secret=SECRET,
        emit=emitted,
        datasets={"/data/landing/": "customers"},
        allowed_sources=ALLOWED,
        clock=lambda: now[0],
        max_replay_entries=500,
    )
    codes = []
    for n in range(800):
        body = json.dumps({"dataset": "customers", "source_uri": f"/data/landing/{n}.csv"}).encode()
        stamp = str(int(now[0]))
        headers = {"x-mlops-timestamp": stamp, "x-mlops-signature": sign(SECRET, stamp, body)}
        try:
            flood.handle("generic", headers, body)
            codes.append(202)
        except Rejected as err:
            codes.append(err.status)
    assert codes[:500] == [202] * 500 and set(codes[500:]) == {429}
    assert len(flood._replays) == 500 and len(emitted.arrivals) == 500
    # Once the window has passed, the remembered signatures go and requests are taken again.
    now[0] += 301
    body = json.dumps({"dataset": "customers", "source_uri": "/data/landing/late.csv"}).encode()
    stamp = str(int(now[0]))
    flood.handle(
        "generic",
        {"x-mlops-timestamp": stamp, "x-mlops-signature": sign(SECRET, stamp, body)},
        body,
    )
    assert len(flood._replays) == 1


def test_bodies_at_the_limit_are_read_and_past_it_refused(
    fuzzed: tuple[TestClient, Recorder],
) -> None:
    client, emitted = fuzzed
    payload = json.dumps({"dataset": "customers", "source_uri": "/data/landing/limit.csv"}).encode()
    at_limit = payload + b" " * (4096 - len(payload))
    past = at_limit + b" "
    accepted = client.post(
        "/hooks/generic", content=at_limit, headers=headers_for("valid", at_limit, 1)
    )
    assert accepted.status_code == 202 and emitted.arrivals[-1].source == "/data/landing/limit.csv"
    refused = client.post("/hooks/generic", content=past, headers=headers_for("valid", past, 2))
    assert refused.status_code == 413


def test_a_slow_client_does_not_hold_up_other_requests() -> None:
    import uvicorn  # the server `mlops webhook serve` runs

    emitted = Recorder()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(gateway(emitted)), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        # Headers promising 4,000 bytes, then a trickle of ten.
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(
            b"POST /hooks/generic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4000\r\n\r\n" + b"{" * 10
        )
        body = json.dumps({"dataset": "customers", "source_uri": "/data/landing/x.csv"}).encode()
        started = time.monotonic()
        response = httpx.post(
            f"http://127.0.0.1:{port}/hooks/generic",
            content=body,
            headers=headers_for("valid", body, 3),
            timeout=10,
        )
        assert response.status_code == 202 and time.monotonic() - started < 2
        slow.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
