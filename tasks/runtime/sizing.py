"""How many Dask workers a stage gets: a pure function of its partitions and their bytes.

The rules, in order (``size_workers``):

1. Nothing to process: ``min_workers``.
2. By count: one worker per ``partitions_per_worker`` partitions (rounded up).
3. By memory: enough workers that the partitions, once decoded into memory (Parquet/CSV on
   disk grows about ``MEMORY_EXPANSION`` times as pandas frames), fill at most
   ``MEMORY_TARGET`` of each worker's memory; Dask starts spilling to disk above that.
4. The larger of the two, but never more workers than partitions (a partition is the unit
   of work: a worker without one would only idle).
5. Clamped to ``[min_workers, max_workers]``: the bounds always win.
"""

from __future__ import annotations

import math

# Decoded frames are several times their compressed on-disk size (dictionary-encoded
# strings and compressed numbers expand); 4 is a conservative rule of thumb for tabular data.
MEMORY_EXPANSION = 4
# Dask's worker memory manager starts spilling at 60% and pausing at 80% of the limit;
# planning for half leaves room for the task's own working copies.
MEMORY_TARGET = 0.5


def size_workers(
    *,
    partitions: int,
    total_bytes: int,
    min_workers: int,
    max_workers: int,
    partitions_per_worker: int,
    memory_per_worker: int,
) -> int:
    """Workers for a stage that processes ``partitions`` partitions of ``total_bytes`` bytes.

    ``memory_per_worker`` is in bytes. See the module docstring for the rules.
    """
    if min_workers < 0 or max_workers < max(min_workers, 1):
        raise ValueError(f"invalid worker bounds: min={min_workers}, max={max_workers}")
    if partitions_per_worker < 1 or memory_per_worker < 1:
        raise ValueError("partitions_per_worker and memory_per_worker must be positive")
    if partitions <= 0:
        return max(min_workers, 1)
    by_count = math.ceil(partitions / partitions_per_worker)
    by_memory = math.ceil(
        max(total_bytes, 0) * MEMORY_EXPANSION / (memory_per_worker * MEMORY_TARGET)
    )
    wanted = min(max(by_count, by_memory), partitions)
    return max(min_workers, 1, min(wanted, max_workers))


def threads_per_worker(*, workers: int, cpus: int, configured: int | None) -> int:
    """Threads for each of ``workers`` workers sharing ``cpus`` cores (local clusters).

    The configured value wins; otherwise the cores are shared out, so a one-worker stage
    still uses every core.
    """
    if configured:
        return configured
    return max(1, cpus // max(workers, 1))
