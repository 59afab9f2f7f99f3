"""Leases in the lake: one run does a piece of work, runs that overlap it wait and reuse it.

Schedules, triggers and people start runs that overlap on one lake; two of them training the
same model version would do the work twice, and the second could not register it. A lease
names the work (``train/customers/<version>``) and lives under ``<lake>/runs/leases/``, so
it works for any processes that share the lake, with or without a shared Prefect API.

A lease is a sequence of generation files ``<key>/<generation>.json``. Taking it is creating
the next generation exclusively (an ``O_EXCL`` link on a local disk, a conditional PUT with
``If-None-Match: *`` on S3): of two runs that try at once, one wins. The holder renews its
file every third of the lease's time while it works and marks it released when done; a
holder that died (SIGKILL, a lost node) stops renewing, and once its lease has expired the
next run takes the next generation. Generations only grow, so a holder that was paused past
its expiry finds a newer generation and knows it lost the lease.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prefect import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel

from tasks.errors import LakeError
from tasks.lake import Lake

logger = logging.getLogger(__name__)

LEASE_SECONDS_ENV = "MLOPS_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 60.0
POLL_SECONDS = 1.0


def lease_seconds() -> float:
    """How long a lease lasts without renewal (``$MLOPS_LEASE_SECONDS``, default 60): how
    long a run that died holds up the next one."""
    value = os.environ.get(LEASE_SECONDS_ENV)
    if not value:
        return DEFAULT_LEASE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{LEASE_SECONDS_ENV}={value!r} is not a number of seconds") from None
    if seconds < 3:
        raise ValueError(f"{LEASE_SECONDS_ENV}={value!r}: a lease must last at least 3 s")
    return seconds


class LeaseRecord(BaseModel):
    """Who holds (or held) one generation of a lease."""

    owner: str
    host: str
    pid: int
    what: str
    acquired_at: float
    expires_at: float
    released: bool = False

    def live(self, now: float) -> bool:
        return not self.released and self.expires_at > now

    def describe(self) -> str:
        return f"{self.what} by pid {self.pid} on {self.host}"


class _Holding(Protocol):
    owner: str
    what: str
    seconds: float
    acquired_at: float


def _held_by_this_process(holding: _Holding, *, released: bool = False) -> bytes:
    """The record of a lease or a mark this process holds, valid ``seconds`` from now."""
    return (
        LeaseRecord(
            owner=holding.owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            what=holding.what,
            acquired_at=holding.acquired_at,
            expires_at=time.time() + holding.seconds,
            released=released,
        )
        .model_dump_json()
        .encode()
    )


class LeaseLost(LakeError):
    """Another run took a lease this run held (it was not renewed in time)."""


@dataclass
class Lease:
    """One run's hold on a piece of work; see :func:`held`."""

    lake: Lake
    key: str
    what: str
    seconds: float
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    generation: int = 0
    lost: bool = False
    # When this run took the lease: kept through renewals (only the expiry moves on).
    acquired_at: float = field(default_factory=time.time)

    @property
    def folder(self) -> str:
        return self.lake.path("runs", "leases", *self.key.split("/"))

    def _path(self, generation: int) -> str:
        return f"{self.folder}/{generation:012d}.json"

    def _generations(self) -> list[int]:
        names = self.lake.list_files(self.folder, ".json")
        return sorted(int(os.path.basename(n).removesuffix(".json")) for n in names)

    def _read(self, generation: int) -> LeaseRecord | None:
        try:
            return LeaseRecord.model_validate(self.lake.read_json(self._path(generation)))
        except (FileNotFoundError, ValueError):
            return None  # released and cleaned up meanwhile, or being written

    def _record(self, *, released: bool = False) -> bytes:
        return _held_by_this_process(self, released=released)

    def try_acquire(self) -> LeaseRecord | None:
        """Take the lease if nobody holds it; None when taken, else the live holder."""
        generations = self._generations()
        top = generations[-1] if generations else 0
        if top:
            current = self._read(top)
            if current is not None and current.live(time.time()):
                return current if current.owner != self.owner else None
        self.acquired_at = time.time()
        if not self.lake.create(self._path(top + 1), self._record()):
            mine = self._read(top + 1)
            if mine is not None and mine.owner == self.owner:  # our own retried write
                self.generation = top + 1
                return None
            return mine or self._read(top)  # another run won this generation
        self.generation = top + 1
        for old in generations:  # earlier generations are over: keep the folder small
            with contextlib.suppress(FileNotFoundError):
                self.lake.remove(self._path(old))
        return None

    def renew(self) -> None:
        """Extend the lease; :class:`LeaseLost` when a newer generation exists."""
        if self._generations()[-1:] != [self.generation]:
            self.lost = True
            raise LeaseLost(f"lease {self.key} was taken by another run (not renewed in time)")
        self.lake.write_bytes(self._path(self.generation), self._record())

    def release(self) -> None:
        if self.generation and not self.lost:
            with contextlib.suppress(LeaseLost):
                if self._generations()[-1:] == [self.generation]:
                    self.lake.write_bytes(self._path(self.generation), self._record(released=True))


@contextlib.contextmanager
def held(
    lake: Lake,
    key: str,
    *,
    what: str,
    seconds: float | None = None,
    timeout: float = 24 * 3600,
    on_wait: Callable[[LeaseRecord], None] | None = None,
) -> Iterator[Lease]:
    """Hold the lease ``key`` while the block runs, waiting while another run holds it.

    ``on_wait`` is told once who holds it. While the block runs, a thread renews the lease;
    it is released when the block ends, also on error. Waiting longer than ``timeout``
    raises :class:`LakeError` naming the holder.
    """
    lease = Lease(lake, key, what=what, seconds=seconds or lease_seconds())
    deadline = time.monotonic() + timeout
    told = False
    while (holder := lease.try_acquire()) is not None:
        if not told and on_wait is not None:
            on_wait(holder)
            told = True
        if time.monotonic() > deadline:
            raise LakeError(
                f"{lake.url_of(lease.folder)}: still held ({holder.describe()}) after "
                f"{timeout:.0f} s"
            )
        time.sleep(POLL_SECONDS)
    stop = _renewing(lease.seconds / 3, lease.renew, f"lease-{key}")
    try:
        yield lease
    finally:
        stop()
        lease.release()


# Lake activity: runs share the lake, garbage collection needs it to itself -------------
# Every run marks the lake in use while it works (one renewed file per run under
# ``runs/leases/active/``); gc's sweep holds the lease ``gc``. A run writes its marker and
# then looks for gc; gc takes its lease and then looks for markers: whichever comes second
# sees the first. A run that sees gc takes its marker back and waits; gc that sees runs
# gives its lease back and waits. Neither waits while holding, so they cannot deadlock.
GC_LEASE = "gc"
ACTIVE = "active"


@dataclass
class Activity:
    """One run's mark that it is using the lake; see :func:`lake_in_use`."""

    lake: Lake
    what: str
    seconds: float
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    acquired_at: float = field(default_factory=time.time)

    @property
    def path(self) -> str:
        return self.lake.path("runs", "leases", ACTIVE, f"{self.owner}.json")

    def mark(self) -> None:
        self.lake.write_bytes(self.path, _held_by_this_process(self))

    def unmark(self) -> None:
        self.lake.remove(self.path)


def active_runs(lake: Lake, *, now: float | None = None) -> list[LeaseRecord]:
    """The runs that mark the lake in use now (markers not renewed in time do not count)."""
    now = time.time() if now is None else now
    live = []
    for path in lake.list_files(lake.path("runs", "leases", ACTIVE), ".json"):
        try:
            record = LeaseRecord.model_validate(lake.read_json(path))
        except (FileNotFoundError, ValueError):
            continue  # finished meanwhile, or being written
        if record.live(now):
            live.append(record)
    return live


def gc_holder(lake: Lake) -> LeaseRecord | None:
    """Who holds the gc lease now, if anyone."""
    lease = Lease(lake, GC_LEASE, what="lake gc", seconds=DEFAULT_LEASE_SECONDS)
    generations = lease._generations()
    current = lease._read(generations[-1]) if generations else None
    return current if current is not None and current.live(time.time()) else None


def _renewing(every: float, renew: Callable[[], None], name: str) -> Callable[[], None]:
    """Run ``renew`` every ``every`` seconds in a thread; the returned function stops it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                renew()
            except LeaseLost as err:
                logger.warning("%s", err)
                return
            except Exception as err:  # a storage hiccup: the next renewal may get through
                logger.warning("Could not renew %s: %s", name, err)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()

    def stop_it() -> None:
        stop.set()
        thread.join(timeout=30)

    return stop_it


@contextlib.contextmanager
def lake_in_use(
    lake: Lake,
    *,
    what: str,
    timeout: float = 24 * 3600,
    on_wait: Callable[[LeaseRecord], None] | None = None,
) -> Iterator[None]:
    """Mark the lake in use by this run while the block runs; wait first while a garbage
    collection sweeps it (``on_wait`` is told once who sweeps).

    A marker that cannot be written (storage failing) is logged and the run goes on: the
    grace period of gc still keeps everything the run writes.
    """
    activity = Activity(lake, what=what, seconds=lease_seconds())
    # A run that fails on bad input before writing anything leaves no lake behind.
    new_lake = lake.is_local and not os.path.isdir(lake.path())
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            activity.mark()
        except OSError as err:
            logger.warning("Could not mark %s in use (%s); going on without", lake.uri, err)
            break
        holder = gc_holder(lake)
        if holder is None:
            break
        activity.unmark()
        if not told and on_wait is not None:
            on_wait(holder)
            told = True
        if time.monotonic() > deadline:
            raise LakeError(f"{lake.uri}: a garbage collection ({holder.describe()}) still runs")
        time.sleep(POLL_SECONDS)
    stop = _renewing(activity.seconds / 3, activity.mark, f"in-use-{activity.owner[:8]}")
    try:
        yield
    finally:
        stop()
        with contextlib.suppress(OSError):
            activity.unmark()
        if new_lake:
            _remove_empty_up_to(os.path.dirname(activity.path), lake.path())


def _remove_empty_up_to(folder: str, root: str) -> None:
    """Remove ``folder`` and its parents up to ``root`` (included) while they are empty."""
    while len(folder) >= len(root):
        try:
            os.rmdir(folder)
        except OSError:
            return  # not empty: the run wrote something, or another run is marking
        folder = os.path.dirname(folder)


@contextlib.contextmanager
def lake_to_itself(
    lake: Lake,
    *,
    what: str,
    timeout: float,
    on_wait: Callable[[list[LeaseRecord]], None] | None = None,
) -> Iterator[Lease]:
    """Hold the gc lease with no run using the lake, while the block runs.

    Runs that start meanwhile wait for the block to end (see :func:`lake_in_use`). While
    runs are using the lake, the lease is given back and taken again once they are done;
    after ``timeout`` seconds of that, :class:`LakeBusy` names them.
    """
    deadline = time.monotonic() + timeout
    told = False
    while True:
        with held(lake, GC_LEASE, what=what, timeout=max(timeout, 1.0)) as lease:
            running = active_runs(lake)
            if not running:
                yield lease
                return
        if not told and on_wait is not None:
            on_wait(running)
            told = True
        if time.monotonic() > deadline:
            raise LakeBusy(
                f"{lake.uri}: still in use after {timeout:.0f} s by "
                + "; ".join(r.describe() for r in running)
            )
        time.sleep(POLL_SECONDS)


class LakeBusy(LakeError):
    """Runs kept using the lake for longer than a garbage collection would wait."""


def flow_uses_lake(lake: str) -> contextlib.AbstractContextManager[None]:
    """:func:`lake_in_use` for the flow run this is called in, named after it; waiting for a
    garbage collection is said in the run's log."""
    from_run = f"{flow_run.flow_name or 'flow'} run {flow_run.name or flow_run.id or '?'}"

    def waiting(holder: LeaseRecord) -> None:
        get_run_logger().info("Waiting for %s to finish with the lake", holder.describe())

    return lake_in_use(Lake(lake), what=from_run, on_wait=waiting)
