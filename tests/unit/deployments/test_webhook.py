"""The webhook gateway over HTTP (Starlette's test client): what it accepts, maps and refuses.

Events go to a recorder here; tests/integration/test_deployments.py sends them to a real
Prefect server and watches the triggered run.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from blocks.gateway import parse_allowed, parse_datasets
from deployments.webhook import (
    EVENT,
    Gateway,
    create_app,
    sign,
)
from tests.support.webhooks import Recorder, s3_record, signed_headers

pytestmark = pytest.mark.timeout(60)
SECRET = "test-secret-0123456789abcdef"


@pytest.fixture
def emitted() -> Recorder:
    return Recorder()


@pytest.fixture
def client(emitted: Recorder) -> Iterator[TestClient]:
    gateway = Gateway(
        secret=SECRET,
        emit=emitted,
        datasets={"s3://lake-bucket/incoming/": "customers"},
        scoring={
            "s3://lake-bucket/incoming/to-score/": "customers",
            "/data/to-score/": "customers",
        },
        allowed_sources=("s3://lake-bucket/", "s3://bucket/landing/", "/data/"),
        max_body=4096,
    )
    with TestClient(create_app(gateway)) as test_client:
        yield test_client


def post(
    client: TestClient,
    source: str,
    payload: Any,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    body = raw if raw is not None else json.dumps(payload).encode()
    signed = signed_headers(secret, body, timestamp=timestamp)
    return client.post(
        f"/hooks/{source}", content=body, headers=signed if headers is None else headers
    )


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_a_signed_generic_notification_becomes_one_event(
    client: TestClient, emitted: Recorder
) -> None:
    payload = {"dataset": "customers", "source_uri": "s3://bucket/landing/customers/"}
    response = post(client, "generic", payload)
    assert response.status_code == 202 and response.json() == {"events": ["event-1"]}
    [arrival] = emitted.arrivals
    assert arrival.payload() == {
        "dataset": "customers",
        "source": "s3://bucket/landing/customers/",
        "objects": ["s3://bucket/landing/customers/"],
        "purpose": "training",
    }


def test_s3_notifications_become_one_event_per_landing_folder(
    client: TestClient, emitted: Recorder
) -> None:
    records = [
        s3_record("incoming/day+1/a.csv"),  # mapped prefix; S3 encodes spaces as '+'
        s3_record("incoming/day+1/b.csv"),
        s3_record("landing/orders/c.parquet"),  # convention: the folder names the dataset
        s3_record("landing/orders/old.csv", name="ObjectRemoved:Delete"),
    ]
    response = post(client, "s3", {"Records": records})
    assert response.status_code == 202 and len(response.json()["events"]) == 2
    assert [a.payload() for a in emitted.arrivals] == [
        {
            "dataset": "customers",
            "source": "s3://lake-bucket/incoming/day 1/",
            "objects": [
                "s3://lake-bucket/incoming/day 1/a.csv",
                "s3://lake-bucket/incoming/day 1/b.csv",
            ],
            "purpose": "training",
        },
        {
            "dataset": "orders",
            "source": "s3://lake-bucket/landing/orders/",
            "objects": ["s3://lake-bucket/landing/orders/c.parquet"],
            "purpose": "training",
        },
    ]


def test_scoring_prefixes_make_scoring_events_the_longest_prefix_winning(
    client: TestClient, emitted: Recorder
) -> None:
    records = [
        s3_record("incoming/to-score/b1/a.csv"),  # under both prefixes: the longer is scoring
        s3_record("incoming/day1/a.csv"),
    ]
    assert post(client, "s3", {"Records": records}).status_code == 202
    assert [(a.dataset, a.purpose, a.source) for a in emitted.arrivals] == [
        ("customers", "scoring", "s3://lake-bucket/incoming/to-score/b1/"),
        ("customers", "training", "s3://lake-bucket/incoming/day1/"),
    ]
    emitted.arrivals.clear()
    for payload in (
        {"dataset": "customers", "source_uri": "/data/to-score/b2/"},  # a --scoring path
        {"dataset": "orders", "source_uri": "/data/to-score/b2/"},  # mapped to another dataset
        {"dataset": "customers", "source_uri": "/data/other/", "purpose": "scoring"},
        {"dataset": "customers", "source_uri": "/data/to-score/b3/", "purpose": "training"},
    ):
        assert post(client, "generic", payload).status_code == 202
    assert [(a.dataset, a.purpose) for a in emitted.arrivals] == [
        ("customers", "scoring"),
        ("orders", "training"),
        ("customers", "scoring"),
        ("customers", "training"),
    ]
    refused = post(client, "generic", {"dataset": "customers", "source_uri": "/x", "purpose": "x"})
    assert refused.status_code == 400 and "purpose" in refused.json()["error"]


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("unsigned", 401, "missing x-mlops-timestamp or x-mlops-signature header"),
        ("forged", 401, "signature does not match"),
        ("stale", 401, "outside the 5-minute replay window"),
        ("future", 401, "outside the 5-minute replay window"),
        ("not-a-timestamp", 401, "must be unix seconds"),
        ("oversized", 413, "body larger than 4096 bytes"),
        ("not-json", 400, "body is not JSON"),
        ("bad-dataset", 400, "dataset: String should match pattern"),
        ("missing-field", 400, "source_uri: Field required"),
        ("extra-field", 400, "lake: Extra inputs are not permitted"),
        ("foreign-uri", 400, "must be a path, an s3:// or a file:// URI"),
        ("s3-not-s3", 400, "Records.0.eventSource"),
        ("s3-unmappable", 400, "cannot tell the dataset"),
        ("dot-dot", 400, "must not contain '..' segments"),
        ("not-allowed", 403, "/etc/landing/ is not under an allowed source prefix"),
        ("s3-not-allowed", 403, "s3://other-bucket/in/ is not under an allowed source prefix"),
    ],
)
def test_bad_requests_are_refused_and_emit_nothing(
    client: TestClient,
    emitted: Recorder,
    caplog: pytest.LogCaptureFixture,
    case: str,
    status: int,
    reason: str,
) -> None:
    good = {"dataset": "customers", "source_uri": "s3://bucket/landing/customers/"}
    now = int(time.time())
    caplog.set_level(logging.DEBUG)
    if case == "unsigned":
        response = post(client, "generic", good, headers={"Content-Type": "application/json"})
    elif case == "forged":
        response = post(client, "generic", good, secret="another-secret-0123456789")
    elif case == "stale":
        response = post(client, "generic", good, timestamp=now - 301)
    elif case == "future":
        response = post(client, "generic", good, timestamp=now + 301)
    elif case == "not-a-timestamp":
        body = json.dumps(good).encode()
        response = post(
            client,
            "generic",
            good,
            headers={
                "X-Mlops-Timestamp": "yesterday",
                "X-Mlops-Signature": sign(SECRET, "yesterday", body),
            },
        )
    elif case == "oversized":
        response = post(client, "generic", None, raw=b"{" + b" " * 5000 + b"}")
    elif case == "not-json":
        response = post(client, "generic", None, raw=b"dataset=customers")
    elif case == "bad-dataset":
        response = post(client, "generic", {**good, "dataset": "../etc"})
    elif case == "missing-field":
        response = post(client, "generic", {"dataset": "customers"})
    elif case == "extra-field":
        response = post(client, "generic", {**good, "lake": "/elsewhere"})
    elif case == "foreign-uri":
        response = post(client, "generic", {**good, "source_uri": "http://example.invalid/x"})
    elif case == "dot-dot":
        response = post(client, "generic", {**good, "source_uri": "/data/../etc/landing/"})
    elif case == "not-allowed":
        response = post(client, "generic", {**good, "source_uri": "/etc/landing/"})
    elif case == "s3-not-allowed":
        records = [
            s3_record("landing/customers/a.csv"),
            s3_record("in/a.csv", bucket="other-bucket"),
        ]
        response = post(client, "s3", {"Records": records})
    elif case == "s3-not-s3":
        response = post(client, "s3", {"Records": [{**s3_record("a/b.csv"), "eventSource": "x"}]})
    else:
        response = post(client, "s3", {"Records": [s3_record("landing/Not A Name/x.csv")]})
    assert response.status_code == status
    assert reason in response.json()["error"]
    assert emitted.arrivals == []
    # The secret is never echoed, in the response or the gateway's log.
    assert SECRET not in response.text
    assert not [r for r in caplog.records if SECRET in r.getMessage()]


def test_a_replayed_request_is_refused(client: TestClient, emitted: Recorder) -> None:
    payload = {"dataset": "customers", "source_uri": "/data/landing"}
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    headers = {"X-Mlops-Timestamp": stamp, "X-Mlops-Signature": sign(SECRET, stamp, body)}
    assert client.post("/hooks/generic", content=body, headers=headers).status_code == 202
    again = client.post("/hooks/generic", content=body, headers=headers)
    assert again.status_code == 401 and "replay" in again.json()["error"]
    assert len(emitted.arrivals) == 1


def test_an_oversized_body_without_a_length_is_refused_while_streaming(
    client: TestClient, emitted: Recorder
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    stamp = str(int(time.time()))
    response = client.post(
        "/hooks/generic",
        content=chunks(),
        headers={"X-Mlops-Timestamp": stamp, "X-Mlops-Signature": "sha256=00"},
    )
    assert response.status_code == 413 and emitted.arrivals == []


def test_unknown_source_weak_secret_and_no_allowlist(emitted: Recorder) -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        Gateway(secret="short", emit=emitted, allow_any=True)
    with pytest.raises(ValueError, match="refusing to start without a source allowlist"):
        Gateway(secret=SECRET, emit=emitted)
    with pytest.raises(ValueError, match="--allow-source 'landing/'"):
        parse_allowed(["landing/"])
    assert parse_allowed(["s3://b/in/", "/data/in/"]) == ("s3://b/in/", "/data/in/")
    with TestClient(create_app(Gateway(secret=SECRET, emit=emitted, allow_any=True))) as client:
        assert client.post("/hooks/github", content=b"{}").status_code == 404


def test_the_readme_openssl_signature_matches(tmp_path: Any) -> None:
    """The curl example in the README signs with openssl; it must agree with the gateway."""
    body = '{"dataset":"customers","source_uri":"/data/landing"}'
    script = (
        'printf "%s.%s" "$TS" "$BODY" | openssl dgst -sha256 -hmac "$MLOPS_WEBHOOK_SECRET" '
        "| sed 's/^.* //'"
    )
    out = subprocess.run(
        ["bash", "-c", script],
        env={
            "TS": "1700000000",
            "BODY": body,
            "MLOPS_WEBHOOK_SECRET": SECRET,
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert f"sha256={out}" == sign(SECRET, "1700000000", body.encode())


def test_dataset_prefixes_are_checked() -> None:
    assert parse_datasets(["s3://b/in/=customers"]) == {"s3://b/in/": "customers"}
    with pytest.raises(ValueError, match="expected s3://bucket/prefix/=dataset-name"):
        parse_datasets(["b/in=customers"])
    # Scoring prefixes may be paths too (generic notifications name paths).
    assert parse_datasets(["/data/in/=customers"], option="--scoring") == {"/data/in/": "customers"}
    with pytest.raises(ValueError, match="--scoring '=customers'"):
        parse_datasets(["=customers"], option="--scoring")
    assert EVENT == "mlops.landing.files-arrived"


def test_metrics_count_requests_rejections_events_and_latency(
    client: TestClient, emitted: Recorder
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    good = {"dataset": "customers", "source_uri": "/data/landing"}
    assert post(client, "generic", good).status_code == 202
    assert post(client, "generic", good, secret="another-secret-0123456789").status_code == 401
    assert post(client, "generic", None, raw=b"nope").status_code == 400
    assert client.post("/hooks/github", content=b"{}").status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("mlops_webhook_requests_total", source="generic", status="202") == 1
    assert value("mlops_webhook_requests_total", source="generic", status="401") == 1
    assert value("mlops_webhook_requests_total", source="generic", status="400") == 1
    assert value("mlops_webhook_requests_total", source="unknown", status="404") == 1
    assert value("mlops_webhook_rejections_total", source="generic", reason="forged") == 1
    assert value("mlops_webhook_rejections_total", source="generic", reason="not-json") == 1
    assert value("mlops_webhook_events_emitted_total", source="generic", dataset="customers") == 1
    assert value("mlops_webhook_request_seconds_count", source="generic") == 3
    assert SECRET not in response.text
