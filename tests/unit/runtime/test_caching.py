"""Cache keys, the lake's result storage and the flow-side lookup, without a Prefect API."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.results import ResultStore
from prefect.serializers import JSONSerializer
from pydantic import ValidationError

from blocks.results import LakeResultStorage
from tasks.ingest.landing import content_tag, list_landing
from tasks.ingest.tasks import INGEST_CACHE, ingest_split_task
from tasks.records import PartitionValidation, Split
from tasks.runtime.caching import CacheOptions, Lookup, look_up, task_source
from tasks.spec import DatasetSpec
from tasks.validate.tasks import VALIDATE_CACHE, validate_partition_task
from tests.support.ingested import Ingested
from tests.support.ingesting import one_split, with_ingest

pytestmark = pytest.mark.timeout(60)


def _store(lake: str) -> ResultStore:
    return ResultStore(
        result_storage=LakeResultStorage(lake=lake),
        serializer=JSONSerializer(),
        cache_result_in_memory=False,
    )


def _validate_call(ingested: Ingested, spec: DatasetSpec | None = None, index: int = 0) -> dict:
    return {"partition": ingested.version.partitions[index], "spec": spec or ingested.spec}


def _ingest_call(split: Split, spec: DatasetSpec, lake: str, **extra: object) -> dict:
    return {"split": split, "spec": spec, "lake": lake, "rewrite": False, **extra}


def _with_column(spec: DatasetSpec, name: str, **changes: object) -> DatasetSpec:
    column = spec.columns[name].model_copy(update=changes)
    return spec.model_copy(update={"columns": {**spec.columns, name: column}})


# Keys --------------------------------------------------------------------------------------
def test_validation_key_follows_partition_content_and_suite_only(ingested: Ingested) -> None:
    task = validate_partition_task
    key = VALIDATE_CACHE.key(task, _validate_call(ingested))
    assert key.startswith("validate-partition/") and len(key.split("/")[1]) == 32
    assert key == VALIDATE_CACHE.key(task, _validate_call(ingested))
    # The landing file's name is not part of the result's identity.
    first = ingested.version.partitions[0]
    segment = first.segments[0].model_copy(update={"source_uri": "file:///x.csv"})
    renamed = first.model_copy(update={"segments": [segment]})
    assert VALIDATE_CACHE.key(task, {**_validate_call(ingested), "partition": renamed}) == key
    assert VALIDATE_CACHE.key(task, _validate_call(ingested, index=1)) != key
    # A description does not change what validation finds; an expectation does.
    described = _with_column(ingested.spec, "age", description="years")
    assert VALIDATE_CACHE.key(task, _validate_call(ingested, described)) == key
    fewer = ingested.spec.model_copy(update={"expectations": ingested.spec.expectations[:1]})
    assert VALIDATE_CACHE.key(task, _validate_call(ingested, fewer)) != key


def test_ingest_key_follows_the_split_its_lake_and_task_source(
    ingested: Ingested, demo_source: Path
) -> None:
    spec, task = ingested.spec, ingest_split_task
    files = list_landing(str(demo_source))
    key = INGEST_CACHE.key(task, _ingest_call(one_split(files, spec), spec, "/lake"))
    assert key.startswith("ingest-split/")
    # A refresh flag is how a result is computed, not what it is.
    call = _ingest_call(one_split(files, spec), spec, "/lake", rewrite=True)
    assert INGEST_CACHE.key(task, call) == key
    changed = [files[0].model_copy(update={"tag": files[0].tag + "x"}), *files[1:]]
    assert INGEST_CACHE.key(task, _ingest_call(one_split(changed, spec), spec, "/lake")) != key
    assert INGEST_CACHE.key(task, _ingest_call(one_split(files, spec), spec, "/other")) != key
    for other in (_with_column(spec, "age", type="float"), with_ingest(spec, partition_rows=10)):
        assert INGEST_CACHE.key(task, _ingest_call(one_split(files, other), other, "/lake")) != key
    # Editing the task's code invalidates its results (Prefect's TASK_SOURCE, kept here).
    edited = task.with_options()
    edited.source_code = (task_source(task) or "") + "\n# changed\n"
    assert INGEST_CACHE.key(edited, _ingest_call(one_split(files, spec), spec, "/lake")) != key


def test_content_tag_changes_when_a_file_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("x\n1\n")
    before = list_landing(str(tmp_path))[0].tag
    assert list_landing(str(tmp_path))[0].tag == before
    path.write_text("x\n2\n")  # same size: the modification time tells
    os.utime(path, ns=(0, 10**18))
    assert list_landing(str(tmp_path))[0].tag != before
    # Object stores: their content hash, whatever the modification time.
    etag = {"size": 4, "ETag": '"abc"', "LastModified": "today"}
    assert content_tag(etag) == "ETag=abc;size=4"
    assert content_tag({**etag, "LastModified": "tomorrow"}) == content_tag(etag)


def test_cache_options_are_validated() -> None:
    assert CacheOptions().expiration is None and not CacheOptions().refresh
    assert CacheOptions(expiration_days=0.5).expiration == timedelta(hours=12)
    with pytest.raises(ValidationError, match="expiration_days"):
        CacheOptions(expiration_days=0)


# Storage and lookup --------------------------------------------------------------------------
def test_lake_result_storage_round_trips_atomically_inside_the_lake(tmp_path: Path) -> None:
    storage = LakeResultStorage(lake=str(tmp_path))
    url = storage.write_path("validate-partition/abc", b"{}")
    assert url.endswith("runs/results/validate-partition/abc")
    assert storage.read_path("validate-partition/abc") == b"{}"
    assert not list(tmp_path.rglob(".tmp-*"))
    with pytest.raises(FileNotFoundError):
        storage.read_path("validate-partition/absent")
    with pytest.raises(ValueError, match="not a relative path"):
        storage.write_path("../escape", b"")


def test_lookup_finds_fresh_records_and_skips_missing_expired_and_damaged_ones(
    ingested: Ingested, tmp_path: Path
) -> None:
    lake = str(tmp_path)
    task = validate_partition_task.with_options(cache_policy=VALIDATE_CACHE)
    calls = [_validate_call(ingested, index=i) for i in range(4)]
    keys = [VALIDATE_CACHE.key(task, c) for c in calls]
    stored = ingested.report.partitions[0]
    store = _store(lake)
    store.write(stored, key=keys[0])
    store.write(stored, key=keys[1], expiration=datetime.now(UTC) - timedelta(seconds=1))
    Path(lake, "runs", "results", keys[2]).write_text('{"metadata": ')  # a torn record
    # A record of an older release, naming a class this code no longer has: Prefect reads
    # it back as a plain dict. It is stale, to be replaced, never handed on as a result.
    store.write(stored, key=keys[3])
    record_path = Path(lake, "runs", "results", keys[3])
    old = record_path.read_text().replace("tasks.records.PartitionValidation", "tasks.gone.Thing")
    record_path.write_text(old)
    found = look_up(task, lake=lake, options=CacheOptions(), calls=calls)
    assert isinstance(found[0].result, PartitionValidation) and found[0].result == stored
    assert found[1:] == [Lookup(), Lookup(stale=True), Lookup(stale=True)]
    # Records are plain JSON in the lake, readable without this package's pickles.
    record = json.loads(Path(lake, "runs", "results", keys[0]).read_text())
    assert record["metadata"]["serializer"]["type"] == "json"
    # A refresh recomputes everything.
    assert (
        look_up(task, lake=lake, options=CacheOptions(refresh=True), calls=calls) == [Lookup()] * 4
    )


def test_lookup_refuses_a_task_without_a_content_key(ingested: Ingested, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="validate-partition"):
        look_up(
            validate_partition_task,
            lake=str(tmp_path),
            options=CacheOptions(),
            calls=[_validate_call(ingested)],
        )
