"""The sizing policy, as a table of cases."""

from __future__ import annotations

import pytest

from tasks.runtime.sizing import MEMORY_EXPANSION, MEMORY_TARGET, size_workers, threads_per_worker

GiB = 2**30
MiB = 2**20
# Enough memory that only the partition count matters.
ROOMY = 64 * GiB


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("partitions", "total_bytes", "bounds", "per_worker", "memory", "expected", "why"),
    [
        (0, 0, (1, 8), 2, ROOMY, 1, "nothing to do: the minimum"),
        (0, 0, (0, 8), 2, ROOMY, 1, "a cluster has at least one worker"),
        (0, 0, (3, 8), 2, ROOMY, 3, "nothing to do still gets min_workers"),
        (1, 10 * MiB, (1, 8), 2, ROOMY, 1, "one partition"),
        (4, 40 * MiB, (1, 8), 2, ROOMY, 2, "by count: 4 partitions / 2 per worker"),
        (5, 50 * MiB, (1, 8), 2, ROOMY, 3, "by count rounds up"),
        (100, 1 * GiB, (1, 8), 2, ROOMY, 8, "capped at max_workers"),
        (2, 1 * MiB, (4, 8), 2, ROOMY, 4, "min_workers wins over a small count"),
        (8, 8 * GiB, (1, 16), 4, 4 * GiB, 8, "by memory: 8 GiB x4 expansion / 2 GiB usable"),
        (2, 8 * GiB, (1, 16), 4, 4 * GiB, 2, "never more workers than partitions"),
        (8, 8 * GiB, (1, 5), 4, 4 * GiB, 5, "memory need still capped at max_workers"),
        (8, 100 * MiB, (1, 16), 1, 4 * GiB, 8, "one partition per worker"),
        (3, 0, (1, 8), 2, ROOMY, 2, "bytes unknown (0): count alone"),
    ],
)
def test_size_workers_table(
    partitions: int,
    total_bytes: int,
    bounds: tuple[int, int],
    per_worker: int,
    memory: int,
    expected: int,
    why: str,
) -> None:
    workers = size_workers(
        partitions=partitions,
        total_bytes=total_bytes,
        min_workers=bounds[0],
        max_workers=bounds[1],
        partitions_per_worker=per_worker,
        memory_per_worker=memory,
    )
    assert workers == expected, why


@pytest.mark.timeout(10)
def test_memory_rule_uses_the_documented_constants() -> None:
    # Exactly one worker's usable memory of decoded data fits one worker; a byte more needs two.
    fits = int(4 * GiB * MEMORY_TARGET / MEMORY_EXPANSION)
    kwargs = {"partitions": 10, "min_workers": 1, "max_workers": 10, "partitions_per_worker": 10}
    assert size_workers(total_bytes=fits, memory_per_worker=4 * GiB, **kwargs) == 1
    assert size_workers(total_bytes=fits + 1, memory_per_worker=4 * GiB, **kwargs) == 2


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "bad",
    [
        {"min_workers": 3, "max_workers": 2},
        {"min_workers": -1},
        {"max_workers": 0, "min_workers": 0},
        {"partitions_per_worker": 0},
        {"memory_per_worker": 0},
    ],
)
def test_size_workers_rejects_impossible_bounds(bad: dict[str, int]) -> None:
    kwargs = {
        "partitions": 4,
        "total_bytes": 0,
        "min_workers": 1,
        "max_workers": 4,
        "partitions_per_worker": 1,
        "memory_per_worker": GiB,
    }
    with pytest.raises(ValueError):
        size_workers(**{**kwargs, **bad})


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("workers", "cpus", "configured", "expected"),
    [(1, 8, None, 8), (2, 8, None, 4), (3, 8, None, 2), (8, 2, None, 1), (2, 8, 3, 3)],
)
def test_threads_share_the_cores(
    workers: int, cpus: int, configured: int | None, expected: int
) -> None:
    assert threads_per_worker(workers=workers, cpus=cpus, configured=configured) == expected
