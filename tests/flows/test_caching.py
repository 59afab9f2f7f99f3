"""Prefect task caching of the ingest and validate stages, with results kept in the lake."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_HOME

from flows.ingest import ingest_flow
from flows.validate import validate_flow
from tasks.runtime.caching import CacheOptions, lake_cached
from tasks.spec import load_spec
from tasks.validate.tasks import VALIDATE_CACHE, validate_partition_task

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]
STAGE_TASKS = ("ingest-split", "validate-partition")


@pytest.fixture
def run_stages(dask_client: Any) -> Callable[..., Counter[str]]:
    """Ingest and validate on the session's cluster (saves starting one per stage)."""
    address = dask_client.scheduler.address

    def run(spec: str, source: Path, lake: str, cache: CacheOptions) -> Counter[str]:
        return _run_stages(spec, source, lake, cache, cluster=address)

    return run


def _run_stages(
    spec: str, source: Path, lake: str, cache: CacheOptions, cluster: str
) -> Counter[str]:
    """Ingest and validate; how many of each per-partition task actually ran."""
    runs: Counter[str] = Counter()
    before = records(lake)
    ingest = ingest_flow(
        spec=spec, source=str(source), lake=lake, cluster=cluster, cache=cache, return_state=True
    )
    validate = validate_flow(spec=spec, lake=lake, cluster=cluster, cache=cache, return_state=True)
    # Each task that ran wrote its result record: the API must come to show that many.
    after = records(lake)
    wrote = sum(1 for key, written in after.items() if before.get(key) != written)
    for state in (ingest, validate):
        assert state.is_completed(), state.message
    ids = [state.state_details.flow_run_id for state in (ingest, validate)]
    runs.update(task_runs(ids, at_least=wrote))
    return runs


def task_runs(
    flow_run_ids: list[Any], *, at_least: int, settle: float = 1.0, timeout: float = 60
) -> Counter[str]:
    """The flow runs' stage task runs by name, once the API has them all. Task runs on Dask
    workers are recorded from the workers' events, a moment after the flow run ends (on a
    busy machine, seconds): read until the API shows at least the ``at_least`` task runs
    the lake says ran and two reads ``settle`` seconds apart agree."""

    def read() -> Counter[str]:
        with get_client(sync_client=True) as client:
            found = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids))
            )
        return Counter(name for r in found if (name := r.name.rsplit("-", 1)[0]) in STAGE_TASKS)

    deadline = time.monotonic() + timeout
    seen = read()
    while time.monotonic() < deadline:
        time.sleep(settle)
        again = read()
        if again == seen and again.total() >= at_least:
            return again
        seen = again
    return seen


def records(lake: str) -> dict[str, float]:
    """The per-partition stages' result records and when each was written."""
    folder = Path(lake) / "runs" / "results"
    found = {
        str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()
    }
    return {k: v for k, v in found.items() if k.split("/")[0] in STAGE_TASKS}


def forget_result_storage_block(lake: str) -> None:
    """What another machine with its own Prefect API sees: the lake, and no saved block."""
    from tasks.runtime.caching import result_storage

    block = result_storage(lake, saved=True)
    with get_client(sync_client=True) as client:
        client.delete_block_document(block._block_document_id)


def test_reruns_reuse_cached_results_from_the_lake_refresh_and_expiry_recompute(
    spec_variant: Callable[..., str],
    demo_source: Path,
    tmp_path: Path,
    lake: str,
    run_stages: Callable[..., Counter[str]],
) -> None:
    # Partitions of 64 KiB: each landing file is a split of its own, cut into two.
    spec = spec_variant(ingest={"partition_size": "64KiB"})
    source = tmp_path / "landing"
    shutil.copytree(demo_source, source)
    default_storage = Path(PREFECT_HOME.value()) / "storage"
    stored_before = set(default_storage.rglob("*")) if default_storage.exists() else set()

    first = run_stages(spec, source, lake, CacheOptions())
    partitions = first["validate-partition"]
    assert first["ingest-split"] == 4 and partitions >= 8
    written = records(lake)
    assert Counter(k.split("/")[0] for k in written) == first
    # The suite's check is cached too: later runs need not import GX to repeat it.
    assert len(list((Path(lake) / "runs" / "checks" / "expectations").iterdir())) == 1
    # Results live in the lake, not in Prefect's local storage.
    assert (set(default_storage.rglob("*")) if default_storage.exists() else set()) == stored_before

    # Another machine (no saved block on its API) with the same lake: nothing runs again.
    forget_result_storage_block(lake)
    assert run_stages(spec, source, lake, CacheOptions()) == {}
    assert records(lake) == written

    # Without the landing index, the splits are planned as before and found in the cache.
    for index in (Path(lake) / "datasets" / "customers" / "landing").iterdir():
        index.unlink()
    assert run_stages(spec, source, lake, CacheOptions()) == {}

    # Prefect itself hits the cache when the task runs: the key is the same on the worker.
    dataset = load_spec(spec)
    partition = ingest_flow(spec=spec, source=str(source), lake=lake).version.partitions[0]

    @flow
    def validate_one() -> Any:
        task = lake_cached(
            validate_partition_task, VALIDATE_CACHE, lake=lake, options=CacheOptions()
        )
        return task(partition=partition, spec=dataset, return_state=True)

    assert validate_one().name == "Cached"

    # One landing file changes: that file and its partitions are processed, nothing else.
    changed = source / "customers-0000.csv"
    frame = pd.read_csv(changed)
    frame.loc[0, "age"] = 1 + int(frame.loc[0, "age"])
    frame.to_csv(changed, index=False)
    again = run_stages(spec, source, lake, CacheOptions())
    assert again["ingest-split"] == 1 and 1 <= again["validate-partition"] <= partitions // 2

    # A refresh recomputes everything and replaces the records, here with a short expiry...
    before = records(lake)
    short = CacheOptions(refresh=True, expiration_days=2 / 86_400)
    assert run_stages(spec, source, lake, short) == first
    after = records(lake)
    replaced = [k for k in before if k in after and after[k] > before[k]]
    assert len(replaced) == sum(first.values())
    # ...after which the expired results are computed again, the landing index's too.
    time.sleep(max(0.0, 2.5 - (time.time() - max(after.values()))))
    assert run_stages(spec, source, lake, CacheOptions()) == first
    assert not [p for p in Path(lake).rglob(".tmp-*")]
    # Besides the cache and the suite's check, only what runs show (Data Docs; reports are
    # off in the suite), and where runs mark the lake in use: no mark outlives its run.
    assert set(os.listdir(Path(lake) / "runs")) == {"results", "checks", "data-docs", "leases"}
    assert [p for p in (Path(lake) / "runs" / "leases").rglob("*") if p.is_file()] == []
