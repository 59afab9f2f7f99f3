"""The webhook gateway: signed HTTP notifications in, Prefect events out.

Prefect's open-source server has events and deployment triggers but no webhook endpoint, so
upstream systems post here (``mlops webhook serve``) and the ``nightly`` deployment's trigger
in ``prefect.yaml`` starts ``ml_pipeline`` from the event.

Endpoints::

    GET  /healthz           liveness, no authentication
    GET  /metrics           Prometheus metrics: requests, rejections, events emitted, latency
    POST /hooks/s3          an S3 event notification (ObjectCreated:* records)
    POST /hooks/generic     {"dataset": "customers", "source_uri": "s3://bucket/landing/customers/",
                             "purpose": "training" | "scoring" (optional)}

Every POST carries two headers::

    X-Mlops-Timestamp: <unix seconds>
    X-Mlops-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

Checked in this order, and nothing is emitted unless all pass: body size (413), signature
headers, timestamp within five minutes and not seen before, signature (401), JSON and payload
shape (400). Each landing folder that received files becomes one event
``mlops.landing.files-arrived`` on resource ``mlops.dataset.<dataset>`` with payload
``{"dataset", "source", "objects", "purpose"}``. The purpose, also the resource label
``mlops.landing.purpose``, says which deployment reacts: ``training`` files start the
pipeline, ``scoring`` files (prefixes given with ``--scoring``) start a scoring run. The
secret comes from a Prefect Secret block or the environment and is never logged or returned.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import posixpath
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from blocks.gateway import DATASET_NAME, WebhookGatewayConfig

logger = logging.getLogger("mlops.webhook")

EVENT = "mlops.landing.files-arrived"
RESOURCE_PREFIX = "mlops.dataset."
TIMESTAMP_HEADER = "x-mlops-timestamp"
SIGNATURE_HEADER = "x-mlops-signature"
REPLAY_WINDOW_SECONDS = 300
MAX_BODY_BYTES = 256 * 1024
# Signatures remembered within the replay window (~100 bytes each): 10 MB at most.
MAX_REPLAY_ENTRIES = 100_000
PURPOSE_LABEL = "mlops.landing.purpose"
Purpose = Literal["training", "scoring"]


# Payloads -------------------------------------------------------------------------------------
class GenericNotification(BaseModel):
    """``{dataset, source_uri}``: new files for a dataset under a folder (or one file)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(pattern=DATASET_NAME)
    source_uri: str = Field(min_length=1, max_length=2048)
    # Absent: scoring when source_uri is under a --scoring prefix, else training.
    purpose: Purpose | None = None

    @field_validator("source_uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        if "://" in value and not value.startswith(("s3://", "s3a://", "file://")):
            raise ValueError("must be a path, an s3:// or a file:// URI")
        if any(ord(c) < 32 for c in value):
            raise ValueError("must not contain control characters")
        if ".." in value.replace("\\", "/").split("/"):
            raise ValueError("must not contain '..' segments")
        return value


class S3Object(BaseModel):
    key: str = Field(min_length=1, max_length=1024)
    size: int | None = None
    eTag: str | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        # Checked as the flows will see it: S3 URL-encodes keys in notifications.
        key = unquote_plus(value)
        if any(ord(c) < 32 for c in key):
            raise ValueError("must not contain control characters")
        # A prefix allowlist compares strings: landing/../private/ starts with landing/.
        if ".." in key.split("/"):
            raise ValueError("must not contain '..' segments")
        return value


class S3Bucket(BaseModel):
    name: str = Field(min_length=3, max_length=63)


class S3Entity(BaseModel):
    bucket: S3Bucket
    object: S3Object


class S3Record(BaseModel):
    eventSource: Literal["aws:s3"]
    eventName: str
    s3: S3Entity


class S3Notification(BaseModel):
    """An S3 event notification (the JSON S3 posts to SNS/SQS/EventBridge targets)."""

    Records: list[S3Record] = Field(min_length=1, max_length=1000)


@dataclass(frozen=True)
class Arrival:
    """New files for one dataset in one landing folder: one event."""

    dataset: str
    source: str
    objects: tuple[str, ...]
    purpose: Purpose = "training"

    def payload(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "source": self.source,
            "objects": list(self.objects),
            "purpose": self.purpose,
        }


@dataclass(frozen=True)
class Routes:
    """Which dataset, and which purpose, files under a prefix land for.

    ``training`` and ``scoring`` map prefixes (``s3://bucket/prefix/`` or, for generic
    notifications, any path) to dataset names; the longest matching prefix of either wins.
    """

    training: dict[str, str] = field(default_factory=dict)
    scoring: dict[str, str] = field(default_factory=dict)

    def match(self, uri: str) -> tuple[str, Purpose] | None:
        found = [
            (prefix, name, purpose)
            for purpose, routes in (("training", self.training), ("scoring", self.scoring))
            for prefix, name in routes.items()
            if uri.startswith(prefix)
        ]
        if not found:
            return None
        _, name, purpose = max(found, key=lambda f: len(f[0]))
        return name, cast(Purpose, purpose)


def arrivals_from_generic(body: Any, routes: Routes) -> list[Arrival]:
    note = GenericNotification.model_validate(body)
    route = routes.match(note.source_uri)
    routed: Purpose = route[1] if route and route[0] == note.dataset else "training"
    purpose = note.purpose or routed
    return [Arrival(note.dataset, note.source_uri, (note.source_uri,), purpose)]


def arrivals_from_s3(body: Any, routes: Routes) -> list[Arrival]:
    """One arrival per landing folder; the dataset and purpose from ``routes``, else the
    folder's name for training.

    Without a matching prefix, the convention ``.../<dataset>/<file>`` applies. Records other
    than ObjectCreated (deletes, the test event S3 sends on setup) are ignored.
    """
    note = S3Notification.model_validate(body)
    folders: OrderedDict[tuple[str, Purpose, str], list[str]] = OrderedDict()
    for record in note.Records:
        if not record.eventName.startswith("ObjectCreated:"):
            continue
        key = unquote_plus(record.s3.object.key)  # S3 URL-encodes keys in notifications
        uri = f"s3://{record.s3.bucket.name}/{key}"
        folder = posixpath.dirname(uri) + "/"
        dataset, purpose = routes.match(uri) or (_dataset_of_folder(uri), "training")
        folders.setdefault((dataset, purpose, folder), []).append(uri)
    return [Arrival(d, f, tuple(objects), p) for (d, p, f), objects in folders.items()]


def _dataset_of_folder(uri: str) -> str:
    name = posixpath.basename(posixpath.dirname(uri))
    if not re.match(DATASET_NAME, name):
        raise ValueError(
            f"{uri}: cannot tell the dataset (folder name '{name}' is not a dataset name); "
            "map the prefix with --dataset s3://bucket/prefix/=NAME"
        )
    return name


# Signatures -----------------------------------------------------------------------------------
def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Mlops-Signature`` value for a request (what senders compute)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


class ReplayGuard:
    """Signatures accepted within the replay window: the same request is accepted once.

    Its memory is bounded: a flood of unique signed requests fills it to ``max_entries``,
    and then new requests are refused until the oldest leave the window. Forgetting one
    early instead would let it be replayed.
    """

    def __init__(self, window: float, max_entries: int = MAX_REPLAY_ENTRIES) -> None:
        self._window = window
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(self, signature: str, now: float) -> bool:
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now - self._window:
                self._seen.popitem(last=False)
            if signature in self._seen:
                return False
            if len(self._seen) >= self._max:
                raise Rejected(
                    429, "replay-guard-full", "too many requests in the replay window; retry later"
                )
            self._seen[signature] = now
            return True


class Rejected(Exception):
    """A refused request: HTTP status, a short code (a metrics label) and the reason."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


class GatewayMetrics:
    """Prometheus metrics of one gateway (its own registry, served at ``GET /metrics``)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlops_webhook_requests",
            "Webhook requests by source and HTTP status.",
            ["source", "status"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "mlops_webhook_rejections",
            "Refused webhook requests by source and reason.",
            ["source", "reason"],
            registry=self.registry,
        )
        self.events = Counter(
            "mlops_webhook_events_emitted",
            "Prefect events emitted, by source and dataset.",
            ["source", "dataset"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlops_webhook_request_seconds",
            "Time to read, verify, map and emit one request.",
            ["source"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))


@dataclass
class Gateway:
    """Verifies and maps requests; ``emit`` sends one event per arrival."""

    secret: str = field(repr=False)
    emit: Callable[[Arrival], str]
    datasets: dict[str, str] = field(default_factory=dict)
    scoring: dict[str, str] = field(default_factory=dict)
    # Where a notification may say files landed; a signed sender naming anything else is
    # refused (403). Empty refuses to start unless ``allow_any`` says so explicitly.
    allowed_sources: tuple[str, ...] = ()
    allow_any: bool = False
    max_body: int = MAX_BODY_BYTES
    window: float = REPLAY_WINDOW_SECONDS
    max_replay_entries: int = MAX_REPLAY_ENTRIES
    clock: Callable[[], float] = time.time
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("the webhook secret must be at least 16 characters")
        if not self.allowed_sources and not self.allow_any:
            raise ValueError(
                "refusing to start without a source allowlist: give --allow-source PREFIX "
                "(repeatable, e.g. s3://bucket/landing/) or, to accept any location a signed "
                "sender names, --allow-any-source"
            )
        self._replays = ReplayGuard(self.window, self.max_replay_entries)
        self._routes = Routes(training=self.datasets, scoring=self.scoring)

    def verify(self, headers: dict[str, str], body: bytes) -> None:
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        signature = headers.get(SIGNATURE_HEADER, "")
        if not timestamp or not signature:
            raise Rejected(
                401, "unsigned", f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header"
            )
        if not timestamp.isdigit():
            raise Rejected(401, "bad-timestamp", f"{TIMESTAMP_HEADER} must be unix seconds")
        now = self.clock()
        if abs(now - int(timestamp)) > self.window:
            raise Rejected(401, "stale", "timestamp outside the 5-minute replay window")
        if not hmac.compare_digest(sign(self.secret, timestamp, body), signature):
            raise Rejected(401, "forged", "signature does not match")
        if not self._replays.first_time(signature, now):
            raise Rejected(401, "replay", "request already received (replay)")

    def arrivals(self, source: str, body: bytes) -> list[Arrival]:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise Rejected(400, "not-json", f"body is not JSON: {err}") from None
        try:
            if source == "s3":
                return arrivals_from_s3(data, self._routes)
            return arrivals_from_generic(data, self._routes)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()
            )
            raise Rejected(
                400, "invalid-payload", f"invalid {source} payload: {problems}"
            ) from None
        except ValueError as err:
            raise Rejected(400, "invalid-payload", str(err)) from None

    def allowed(self, uri: str) -> bool:
        return self.allow_any or any(uri.startswith(p) for p in self.allowed_sources)

    def handle(self, source: str, headers: dict[str, str], body: bytes) -> list[str]:
        """Verify, map and emit; the ids of the events emitted (none when rejected)."""
        self.verify(headers, body)
        arrivals = self.arrivals(source, body)
        # All or nothing: one location outside the allowlist refuses the whole request.
        for arrival in arrivals:
            refused = [u for u in (arrival.source, *arrival.objects) if not self.allowed(u)]
            if refused:
                raise Rejected(
                    403,
                    "source-not-allowed",
                    f"{refused[0]} is not under an allowed source prefix",
                )
        ids = []
        for arrival in arrivals:
            ids.append(self.emit(arrival))
            self.metrics.events.labels(source, arrival.dataset).inc()
        return ids


# Prefect events -------------------------------------------------------------------------------
def emit_arrival(arrival: Arrival) -> str:
    """Emit the Prefect event a deployment trigger matches (``prefect.yaml``)."""
    from prefect.events import emit_event

    event = emit_event(
        event=EVENT,
        resource={
            "prefect.resource.id": f"{RESOURCE_PREFIX}{arrival.dataset}",
            "prefect.resource.name": arrival.dataset,
            PURPOSE_LABEL: arrival.purpose,
        },
        payload=arrival.payload(),
    )
    if event is None:
        raise RuntimeError("Prefect did not accept the event (is PREFECT_API_URL set?)")
    return str(event.id)


# HTTP -----------------------------------------------------------------------------------------
SOURCES = ("s3", "generic")


def create_app(gateway: Gateway) -> Any:
    """The Starlette application serving ``gateway``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(gateway.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def hook(request: Request) -> JSONResponse:
        source = request.path_params["source"]
        if source not in SOURCES:
            # A fixed label: arbitrary paths must not grow the metrics without bound.
            gateway.metrics.requests.labels("unknown", "404").inc()
            return JSONResponse({"error": f"unknown source; use one of {SOURCES}"}, 404)
        started = time.perf_counter()
        try:
            body = await _read_limited(request, gateway.max_body)
            headers = {k.lower(): v for k, v in request.headers.items()}
            # Emitting talks to the Prefect API: off the event loop.
            from starlette.concurrency import run_in_threadpool

            ids = await run_in_threadpool(gateway.handle, source, headers, body)
        except Rejected as err:
            logger.warning("Rejected %s webhook: %s %s", source, err.status, err.reason)
            gateway.metrics.rejections.labels(source, err.code).inc()
            response = JSONResponse({"error": err.reason}, err.status)
        else:
            logger.info("Accepted %s webhook: %d event(s) %s", source, len(ids), ", ".join(ids))
            response = JSONResponse({"events": ids}, 202)
        gateway.metrics.requests.labels(source, str(response.status_code)).inc()
        gateway.metrics.latency.labels(source).observe(time.perf_counter() - started)
        return response

    return Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/hooks/{source}", hook, methods=["POST"]),
        ]
    )


async def _read_limited(request: Any, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Rejected(413, "too-large", f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, "too-large", f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def load_secret(block: str | None, env: str) -> str:
    """The shared secret from a Prefect Secret block, else from the environment."""
    import os

    if block:
        from prefect.blocks.system import Secret

        # Called from sync code: Prefect's dispatch returns the block, not a coroutine.
        secret: Any = Secret.load(block)
        return str(secret.get())
    value = os.environ.get(env)
    if not value:
        raise ValueError(f"no webhook secret: set {env} or pass --secret-block NAME")
    return value


def gateway_of(
    config: WebhookGatewayConfig,
    *,
    secret_env: str,
    emit: Callable[[Arrival], str] = emit_arrival,
) -> Gateway:
    """The gateway ``config`` describes (its secret from its block or ``secret_env``)."""
    return Gateway(
        secret=load_secret(config.secret_block, secret_env),
        emit=emit,
        datasets=config.datasets,
        scoring=config.scoring,
        allowed_sources=tuple(config.allowed_sources),
        allow_any=config.allow_any_source,
    )


def serve(gateway: Gateway, *, host: str, port: int) -> None:
    """Run ``gateway`` until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logger.info("Webhook gateway on http://%s:%d (POST /hooks/s3, /hooks/generic)", host, port)
    uvicorn.run(create_app(gateway), host=host, port=port, log_level="warning")
