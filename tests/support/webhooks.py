"""What the webhook gateway's tests give it as ``emit``: a recorder of the arrivals."""

from __future__ import annotations

import time
from typing import Any

from deployments.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, Arrival, sign


class Recorder:
    """Records every arrival the gateway emits; returns an event id like Prefect's."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []

    def __call__(self, arrival: Arrival) -> str:
        self.arrivals.append(arrival)
        return f"event-{len(self.arrivals)}"


def signed_headers(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers a sender signs ``body`` with (now, or at ``timestamp``)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(secret, stamp, body),
        "Content-Type": "application/json",
    }


def s3_record(
    key: str, name: str = "ObjectCreated:Put", bucket: str = "lake-bucket"
) -> dict[str, Any]:
    """One record of an S3 event notification."""
    return {
        "eventSource": "aws:s3",
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10, "eTag": "abc"}},
    }
