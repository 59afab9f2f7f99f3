"""A packed partition that fails validation rejects only the files at fault: their rows
are skipped, their partition-mates are trained on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.ingest.versions import write_version
from tasks.lake import Lake
from tasks.records import DatasetVersion
from tasks.spec import DatasetSpec, load_spec
from tasks.train.distributed import read_rows
from tasks.train.plan import plan_training
from tasks.validate.partition import validate_files, validate_partition
from tasks.validate.report import failure_message, write_report
from tests.support.ingesting import ingest_paths

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def spec(demo_spec: str) -> DatasetSpec:
    return load_spec(demo_spec)


def packed(paths: list[Path], spec: DatasetSpec, lake: Lake) -> DatasetVersion:
    outcome = ingest_paths(paths, spec, lake)
    assert len(outcome.partitions) == 1 and not outcome.quarantined
    return write_version(spec=spec, lake=lake, source="s", outcomes=[outcome]).version


def test_only_the_failing_file_of_a_packed_partition_is_rejected(
    spec: DatasetSpec, demo_source: Path, defect_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    out_of_range = defect_source / "customers-0002.parquet"  # age 150, negative charges
    version = packed(
        [demo_source / "customers-0000.csv", out_of_range, demo_source / "customers-0003.csv"],
        spec,
        lake,
    )
    (partition,) = version.partitions
    whole = validate_partition(partition=partition, spec=spec)
    assert not whole.success
    files = validate_files(partition=partition, spec=spec)
    assert [(Path(r.source_uri).name, r.success) for r in files] == [
        ("customers-0000.csv", True),
        ("customers-0002.parquet", False),
        ("customers-0003.csv", True),
    ]
    report = write_report(spec=spec, lake=lake, version=version, results=[whole], files=files)
    bad = partition.segments[1]
    assert list(report.rejected_files) == [bad.source_uri]
    assert "expect_column_values_to_be_between(age)" in report.rejected_files[bad.source_uri]
    assert report.accepted == [partition.partition_id] and report.rejected == []
    assert report.excluded_rows == {partition.partition_id: [(bad.start, bad.stop)]}
    assert (report.accepted_files, report.total_files) == (2, 3) and report.passed
    # Training reads the partition without the rejected file's rows.
    plan = plan_training(spec=spec, version=version, report=report)
    rows = read_rows(partition.uri, columns=None, skipped=tuple(plan.excluded[partition.uri]))
    assert len(rows) == 3000
    assert not rows["customer_id"].isin(pd.read_parquet(out_of_range)["customer_id"]).any()


def test_files_that_fail_only_together_are_rejected_together(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    # Each file alone is valid; together they repeat customer ids (uniqueness fails).
    copy = tmp_path / "same-customers.csv"
    frame = pd.read_csv(demo_source / "customers-0000.csv")
    frame["age"] = frame["age"].clip(upper=100) // 2 + 18  # other bytes, same ids
    frame.to_csv(copy, index=False)
    lake = Lake(str(tmp_path / "lake"))
    version = packed([demo_source / "customers-0000.csv", copy], spec, lake)
    (partition,) = version.partitions
    whole = validate_partition(partition=partition, spec=spec)
    files = validate_files(partition=partition, spec=spec)
    assert not whole.success and all(r.success for r in files)
    report = write_report(spec=spec, lake=lake, version=version, results=[whole], files=files)
    assert sorted(report.rejected_files) == sorted(partition.sources)
    assert all("its partition failed as a whole" in r for r in report.rejected_files.values())
    assert report.rejected == [partition.partition_id] and not report.passed
    message = failure_message(report, version)
    assert "0 of 2 landing file(s) accepted" in message
    assert all(uri in message for uri in partition.sources)
