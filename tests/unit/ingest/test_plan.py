"""Planning splits (pure): bounded groups of files, sticky across runs, so that only new,
changed and orphaned files are read again."""

from __future__ import annotations

import pytest

from tasks.ingest.plan import estimated_bytes, pack, plan_ingest, split_id
from tasks.records import LandingFile, LandingIndex, PartitionRef, Segment, SplitOutcome
from tasks.spec import DatasetSpec, load_spec
from tests.support.ingesting import with_ingest

pytestmark = pytest.mark.timeout(30)
MiB = 2**20


@pytest.fixture
def spec(demo_spec: str) -> DatasetSpec:
    return with_ingest(load_spec(demo_spec), partition_size="10MiB")


def landing(name: str, size: int, tag: str = "v1") -> LandingFile:
    return LandingFile(uri=f"s3://bucket/landing/{name}", bytes=size, tag=f"{tag}-{name}")


def kept(splits: list[SplitOutcome]) -> list[list[str]]:
    return [[f.uri.rsplit("/", 1)[-1] for f in s.files] for s in splits]


def names(plan_splits) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [[f.uri.rsplit("/", 1)[-1] for f in s.files] for s in plan_splits]


def outcome_of(split) -> SplitOutcome:  # type: ignore[no-untyped-def]
    """What ingesting ``split`` would leave in the index (one partition)."""
    segments = [
        Segment(source_uri=f.uri, tag=f.tag, sha256=f.tag, format="csv", rows=1)
        for f in split.files
    ]
    partition = PartitionRef(
        partition_id=split.split_id, uri="s3://lake/p", rows=1, bytes=1, segments=segments
    )
    return SplitOutcome(split_id=split.split_id, files=split.files, partitions=[partition])


def index_of(spec: DatasetSpec, splits) -> LandingIndex:  # type: ignore[no-untyped-def]
    return LandingIndex(
        source_uri="s3://bucket/landing/",
        schema_hash=spec.schema_hash(),
        partition_bytes=spec.ingest.partition_bytes,
        partition_rows=spec.ingest.partition_rows,
        splits=[outcome_of(s) for s in splits],
    )


def test_estimates_follow_the_format() -> None:
    assert estimated_bytes(landing("a.csv", MiB)) == MiB
    assert estimated_bytes(landing("a.csv.gz", MiB)) == 4 * MiB
    assert estimated_bytes(landing("a.parquet", MiB)) == 3 * MiB


def test_small_files_are_packed_and_large_ones_alone(spec: DatasetSpec) -> None:
    files = [landing(f"small-{i:04d}.csv", MiB) for i in range(25)] + [
        landing("huge.csv", 50 * MiB),
        landing("zipped.csv.gz", 3 * MiB),  # 12 MiB decoded: more than a partition
    ]
    splits = pack(files, spec)
    sizes = [len(s.files) for s in splits]
    # 10 files of 1 MiB make a partition; the large files have a split each, in landing order.
    assert sizes == [1, 10, 10, 5, 1]
    assert names(splits)[0] == ["huge.csv"] and names(splits)[-1] == ["zipped.csv.gz"]
    assert all(s.estimated_bytes <= 10 * MiB for s in splits[1:4])
    # Two thousand tiny files are one split, not two thousand tasks.
    tiny = [landing(f"t-{i:05d}.csv", 8 * 1024) for i in range(2000)]
    assert [len(s.files) for s in pack(tiny, spec)] == [1280, 720]


def test_a_split_is_named_by_its_files_content_tags_and_partition_size(spec: DatasetSpec) -> None:
    files = [landing("a.csv", MiB), landing("b.csv", MiB)]
    assert split_id(files, spec) == split_id(list(files), spec)
    assert split_id([files[0], landing("b.csv", MiB, tag="v2")], spec) != split_id(files, spec)
    assert split_id(files, with_ingest(spec, partition_size="20MiB")) != split_id(files, spec)


def test_unchanged_splits_are_kept_and_only_new_files_are_read(spec: DatasetSpec) -> None:
    files = [landing(f"f-{i:02d}.csv", 4 * MiB) for i in range(6)]
    first = plan_ingest(files, spec, index=None)
    assert names(first.todo) == [
        ["f-00.csv", "f-01.csv"],
        ["f-02.csv", "f-03.csv"],
        ["f-04.csv", "f-05.csv"],
    ]
    index = index_of(spec, first.todo)
    # Nothing changed: everything is kept, nothing is read.
    again = plan_ingest(files, spec, index=index)
    assert again.todo == [] and kept(again.kept) == names(first.todo)
    # A new file (first in landing order, too): a split of its own; the others are kept.
    added = plan_ingest([landing("a-new.csv", MiB), *files], spec, index=index)
    assert names(added.todo) == [["a-new.csv"]] and len(added.kept) == 3


def test_a_changed_or_removed_file_rereads_only_its_split(spec: DatasetSpec) -> None:
    files = [landing(f"f-{i:02d}.csv", 4 * MiB) for i in range(6)]
    index = index_of(spec, plan_ingest(files, spec, index=None).todo)
    changed = [*files[:2], landing("f-02.csv", 4 * MiB, tag="v2"), *files[3:]]
    plan = plan_ingest(changed, spec, index=index)
    assert names(plan.todo) == [["f-02.csv", "f-03.csv"]]
    assert plan.todo[0].files[0].tag == "v2-f-02.csv"
    assert kept(plan.kept) == [["f-00.csv", "f-01.csv"], ["f-04.csv", "f-05.csv"]]
    removed = [f for f in files if f.uri.rsplit("/", 1)[-1] != "f-04.csv"]
    plan = plan_ingest(removed, spec, index=index)
    assert names(plan.todo) == [["f-05.csv"]] and len(plan.kept) == 2


def test_an_index_of_other_settings_is_not_used(spec: DatasetSpec) -> None:
    files = [landing("a.csv", MiB)]
    index = index_of(spec, plan_ingest(files, spec, index=None).todo)
    assert len(plan_ingest(files, spec, index=index).kept) == 1
    other = with_ingest(spec, partition_size="64MiB")
    assert plan_ingest(files, other, index=index).kept == []
    rows = with_ingest(spec, partition_rows=100)
    assert plan_ingest(files, rows, index=index).kept == []


def test_measured_sizes_replace_the_estimate(spec: DatasetSpec) -> None:
    files = [landing(f"p-{i}.parquet", MiB) for i in range(6)]
    # Estimated at 3 MiB each: three per partition of 10 MiB.
    assert [len(s.files) for s in pack(files, spec)] == [3, 3]
    # Their footers say 1 MiB each (floats barely compress): all six fit in one.
    measured = {f.uri: MiB for f in files}
    assert [len(s.files) for s in plan_ingest(files, spec, index=None, decoded=measured).todo] == [
        6
    ]
