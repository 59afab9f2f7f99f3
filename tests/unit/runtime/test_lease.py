"""Leases in the lake: one holder at a time among real processes, renewal keeps it, a holder
that stops renewing loses it once it expires, and a waiter proceeds when it is released."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.lake import Lake
from tasks.runtime.lease import (
    Activity,
    LakeBusy,
    Lease,
    LeaseLost,
    LeaseRecord,
    active_runs,
    held,
    lake_in_use,
    lake_to_itself,
    lease_seconds,
)

pytestmark = pytest.mark.timeout(60)


def _race(root: str, queue: multiprocessing.Queue[str], barrier: Any) -> None:
    lease = Lease(Lake(root), "train/m/v1", what="race", seconds=30)
    barrier.wait()
    queue.put("won" if lease.try_acquire() is None else "waits")


def test_of_processes_racing_for_a_lease_exactly_one_wins(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[str] = context.Queue()
    barrier = context.Barrier(4)
    racers = [context.Process(target=_race, args=(str(tmp_path), queue, barrier)) for _ in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=30)
    outcomes = sorted(queue.get(timeout=5) for _ in racers)
    assert outcomes == ["waits", "waits", "waits", "won"]


def test_create_writes_once_and_whole(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    path = f"{tmp_path}/a/b.json"
    assert lake.create(path, b"first") is True
    assert lake.create(path, b"second") is False
    assert Path(path).read_bytes() == b"first"
    assert sorted(p.name for p in Path(path).parent.iterdir()) == ["b.json"]


def test_an_expired_lease_is_taken_and_its_old_holder_knows(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    first = Lease(lake, "train/m/v1", what="first", seconds=3)
    second = Lease(lake, "train/m/v1", what="second", seconds=3)
    assert first.try_acquire() is None
    holder = second.try_acquire()
    assert isinstance(holder, LeaseRecord) and holder.what == "first"
    taken = LeaseRecord.model_validate_json(next(lake_files(tmp_path)).read_text())
    first.renew()  # renewal moves the expiry on, not when it was taken
    renewed = LeaseRecord.model_validate_json(next(lake_files(tmp_path)).read_text())
    assert renewed.acquired_at == taken.acquired_at and renewed.expires_at > taken.expires_at
    time.sleep(3.2)
    assert second.try_acquire() is None and second.generation == 2
    with pytest.raises(LeaseLost, match="taken by another run"):
        first.renew()
    # Only the current generation is kept.
    assert [p.name for p in (tmp_path / "runs/leases/train/m/v1").iterdir()] == [
        "000000000002.json"
    ]


def lake_files(root: Path) -> Iterator[Path]:
    return (root / "runs/leases/train/m/v1").glob("*.json")


def test_a_waiter_proceeds_when_the_holder_releases_and_renewal_keeps_it_held(
    tmp_path: Path,
) -> None:
    lake = Lake(str(tmp_path))
    order: list[str] = []
    waited: list[LeaseRecord] = []
    holding = threading.Event()

    def first() -> None:
        with held(lake, "k", what="first", seconds=4):
            holding.set()
            time.sleep(6)  # longer than the lease: the renewer keeps it
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(10)
    with held(lake, "k", what="second", seconds=4, on_wait=waited.append):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]
    assert [w.what for w in waited] == ["first"]  # told once


def test_waiting_too_long_names_the_holder(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    assert Lease(lake, "k", what="training m@v1", seconds=30).try_acquire() is None
    with (
        pytest.raises(Exception, match=r"still held \(training m@v1 by pid \d+"),
        held(lake, "k", what="other", timeout=1.5),
    ):
        pass


def test_the_lease_time_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_LEASE_SECONDS", raising=False)
    assert lease_seconds() == 60
    monkeypatch.setenv("MLOPS_LEASE_SECONDS", "8")
    assert lease_seconds() == 8
    for bad in ("soon", "1"):
        monkeypatch.setenv("MLOPS_LEASE_SECONDS", bad)
        with pytest.raises(ValueError, match="MLOPS_LEASE_SECONDS"):
            lease_seconds()


def test_a_run_waits_while_gc_has_the_lake_and_gc_waits_while_runs_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_LEASE_SECONDS", "3")
    lake = Lake(str(tmp_path))
    told: list[str] = []
    entered = threading.Event()

    def gc_for_a_second() -> None:
        with lake_to_itself(lake, what="lake gc", timeout=10):
            entered.set()
            time.sleep(1.5)

    sweeper = threading.Thread(target=gc_for_a_second)
    sweeper.start()
    assert entered.wait(10)
    started = time.monotonic()
    with lake_in_use(lake, what="pipeline run a", on_wait=lambda h: told.append(h.what)):
        waited = time.monotonic() - started
        assert [r.what for r in active_runs(lake)] == ["pipeline run a"]
        # While the run uses the lake, gc waits, and gives up naming it.
        with (
            pytest.raises(LakeBusy, match="pipeline run a"),
            lake_to_itself(lake, what="lake gc", timeout=1.5),
        ):
            pytest.fail("gc had the lake while a run used it")
    sweeper.join()
    assert told == ["lake gc"] and waited > 0.5
    assert active_runs(lake) == []  # the run's mark is gone with it
    with lake_to_itself(lake, what="lake gc", timeout=5):
        pass


def _mark_and_die(root: str) -> None:
    activity = Activity(Lake(root), what="killed run", seconds=3)
    activity.mark()
    os._exit(9)  # as SIGKILL would: no cleanup, no renewal


def test_the_mark_of_a_killed_run_stops_counting_once_it_expires(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    killed = context.Process(target=_mark_and_die, args=(str(tmp_path),))
    killed.start()
    killed.join(timeout=30)
    lake = Lake(str(tmp_path))
    assert [r.what for r in active_runs(lake)] == ["killed run"]
    started = time.monotonic()
    with lake_to_itself(lake, what="lake gc", timeout=20):
        assert 1 < time.monotonic() - started < 15
