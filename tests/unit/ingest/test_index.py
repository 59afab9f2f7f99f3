"""The landing index (the planner's memory) and the adoption of a 0.1 lake's partitions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.ingest.index import index_path, plan_ingestion, read_index, write_index
from tasks.ingest.landing import list_landing
from tasks.ingest.versions import write_version
from tasks.lake import Lake
from tasks.spec import DatasetSpec, load_spec
from tests.support.ingesting import ingest_source
from tests.support.release_lakes import copy_release_lake

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def spec(demo_spec: str) -> DatasetSpec:
    return load_spec(demo_spec)


def test_the_index_remembers_the_splits_of_a_landing_folder(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    source = str(demo_source)
    assert read_index(lake, spec, source) is None
    outcomes = ingest_source(demo_source, spec, lake)
    write_version(spec=spec, lake=lake, source=source, outcomes=outcomes)
    write_index(lake, spec, source, outcomes)
    index = read_index(lake, spec, source)
    assert index is not None and [s.split_id for s in index.splits] == [
        o.split_id for o in outcomes
    ]
    # What a kept split wrote is history: nothing is written by keeping it.
    assert all(s.written == [] for s in index.splits)
    plan = plan_ingestion(lake, spec, source, list_landing(source))
    assert plan.todo == [] and len(plan.kept) == len(outcomes)
    # A refresh forgets it; another landing folder has its own.
    assert plan_ingestion(lake, spec, source, list_landing(source), refresh=True).kept == []
    assert read_index(lake, spec, "s3://elsewhere/") is None
    # A damaged index costs time, not correctness: every file counts as new.
    Path(index_path(lake, spec.name, source)).write_text("{not json")
    assert read_index(lake, spec, source) is None


def test_a_lake_of_release_0_1_is_adopted_after_rehashing_its_files(
    spec: DatasetSpec, tmp_path: Path
) -> None:
    old = copy_release_lake("0.1.0", tmp_path)
    lake = Lake(str(old.lake))
    files = list_landing(str(old.landing))
    plan = plan_ingestion(lake, spec, str(old.landing), files)
    # Each of the four one-file partitions is kept (as a split of its own), none is read.
    assert plan.adopted == 4 and plan.todo == []
    partitions = [p for s in plan.kept for p in s.partitions]
    on_disk = sorted(p.stem for p in (old.lake / "datasets/customers/partitions").glob("*.parquet"))
    assert sorted(p.partition_id for p in partitions) == on_disk
    assert all(p.segments[0].tag for p in partitions)
    # A file changed since 0.1 wrote its partition is ingested again.
    changed = old.landing / "customers-0000.csv"
    changed.write_bytes(changed.read_bytes().replace(b"C0", b"D0", 1))
    os.utime(changed, (1, 1))
    plan = plan_ingestion(lake, spec, str(old.landing), list_landing(str(old.landing)))
    assert plan.adopted == 3 and [f.uri for s in plan.todo for f in s.files] == [files[0].uri]
