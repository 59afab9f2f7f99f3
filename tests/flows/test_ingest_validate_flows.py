from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flows.ingest import ingest_flow
from flows.validate import validate_flow
from tasks.errors import SourceError, ValidationFailed
from tests.support.artifacts import read_artifact
from tests.support.paths import DEMO_SPEC

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def test_ingest_quarantines_bad_files_and_reingests_nothing_on_rerun(
    demo_spec: str, defect_source: Path, lake: str
) -> None:
    first = ingest_flow(spec=demo_spec, source=str(defect_source), lake=lake)
    version = first.version
    # Eight small files: one partition of the five good ones, three set aside.
    assert len(version.files) == 8 and first.files_read == 8
    (partition,) = version.partitions
    assert len(partition.segments) == 5 and first.new_partitions == [partition.partition_id]
    assert sorted(Path(q.source_uri).name for q in version.quarantined) == [
        "customers-0001.csv.gz",
        "customers-0003.csv",
        "customers-0004.csv.gz",
    ]
    manifest = json.loads(Path(version.manifest_uri.removeprefix("file://")).read_text())
    assert manifest["version"] == version.version and len(manifest["partitions"]) == 1
    table, artifact = read_artifact("ingest-customers")
    assert {row["status"] for row in table} == {"new", "quarantined"}
    assert "8 landing files in 1 partitions (1 new; 8 files read now)" in artifact.description
    assert "3 files quarantined" in artifact.description

    # Nothing changed: no file is read again.
    again = ingest_flow(spec=demo_spec, source=str(defect_source), lake=lake)
    assert again.version.version == version.version and again.files_read == 0
    assert again.new_partitions == [] and again.reused_partitions == [partition.partition_id]
    assert again.version.quarantined == version.quarantined
    table, _ = read_artifact("ingest-customers")
    assert sorted({row["status"] for row in table}) == ["quarantined", "unchanged"]


def test_ingest_fails_when_no_file_can_be_read(demo_spec: str, tmp_path: Path, lake: str) -> None:
    (tmp_path / "land").mkdir()
    (tmp_path / "land" / "a.csv").write_text("just,a,header\n")
    (tmp_path / "land" / "b.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SourceError) as err:
        ingest_flow(spec=demo_spec, source=str(tmp_path / "land"), lake=lake)
    assert "none of the 2 landing file(s) could be ingested" in str(err.value)
    assert "a.csv: missing column(s)" in str(err.value)
    assert "b.parquet: cannot parse as parquet" in str(err.value)
    assert not (Path(lake) / "datasets" / "customers" / "versions").exists()


def test_validate_accepts_good_partitions_and_quarantines_bad_ones(
    demo_spec: str, defect_source: Path, lake: str
) -> None:
    version = ingest_flow(spec=demo_spec, source=str(defect_source), lake=lake).version
    report = validate_flow(spec=demo_spec, lake=lake, dataset_version=version.version)
    assert report.passed and report.total_files == 8
    assert report.accepted_files == 4 and report.accepted_fraction == 0.5
    # The packed partition failed; validated per file, one file is at fault.
    (partition,) = version.partitions
    assert report.accepted == [partition.partition_id] and not report.partitions[0].success
    [rejected] = [r for r in report.segments if not r.success]
    assert rejected.source_uri.endswith("customers-0002.parquet")
    assert list(report.rejected_files) == [rejected.source_uri]
    bad = next(s for s in partition.segments if s.source_uri == rejected.source_uri)
    assert report.excluded_rows == {partition.partition_id: [(bad.start, bad.stop)]}
    failed = {o.column for o in rejected.expectations if not o.success}
    assert failed == {"age", "monthly_charges"}
    records = [
        json.loads(p.read_text())
        for p in (Path(lake) / "datasets" / "customers" / "quarantine").glob("*.json")
    ]
    [record] = [r for r in records if r["stage"] == "validate"]
    assert record["report"]["failed"] == 2 and record["source_uri"] == rejected.source_uri
    assert "customers-0002.parquet: failed 2 of" in record["reason"]

    table, artifact = read_artifact("validation-customers")
    assert [r["of"] for r in table] == ["partition"] + ["file"] * 5
    row = next(r for r in table if r["source"] == "customers-0002.parquet")
    assert row["success"] is False and row["failed"] == 2 and "(age)" in row["failed expectations"]
    assert "4/8 landing files accepted (50%, threshold 50%); passed" in artifact.description


def test_validate_fails_below_threshold_naming_every_rejected_file(
    spec_variant, defect_source: Path, lake: str
) -> None:
    strict = spec_variant(validation={"min_accepted_fraction": 0.9})
    ingest_flow(spec=strict, source=str(defect_source), lake=lake)
    with pytest.raises(ValidationFailed) as err:
        validate_flow(spec=strict, lake=lake)
    message = str(err.value)
    assert "4 of 8 landing file(s) accepted (50%), the spec requires at least 90%" in message
    for name in ["0001.csv.gz", "0002.parquet", "0003.csv", "0004.csv.gz"]:
        assert f"customers-{name}" in message
    assert list((Path(lake) / "datasets" / "customers" / "validations").glob("*.json"))


def test_a_removed_file_rereads_only_its_split_and_a_new_one_only_itself(
    spec_variant, demo_source: Path, tmp_path: Path, lake: str
) -> None:
    # Partitions of 64 KiB: each of the four files is a split of its own.
    spec = spec_variant(ingest={"partition_size": "64KiB"})
    landing = tmp_path / "landing"
    shutil.copytree(demo_source, landing)
    first = ingest_flow(spec=spec, source=str(landing), lake=lake)
    assert first.files_read == 4 and len(first.version.files) == 4
    (landing / "customers-0001.csv.gz").unlink()
    removed = ingest_flow(spec=spec, source=str(landing), lake=lake)
    # Its own split is gone; the other splits are kept, without reading a byte.
    assert removed.files_read == 0 and removed.new_partitions == []
    assert len(removed.version.files) == 3 and removed.version.rows == 4500
    assert removed.version.version != first.version.version
    shutil.copy(demo_source / "customers-0001.csv.gz", landing / "customers-0009.csv.gz")
    added = ingest_flow(spec=spec, source=str(landing), lake=lake)
    assert added.files_read == 1 and added.version.rows == 6000
    # The same rows under another name and place in the landing order: the same partitions
    # (a whole file's pieces are named by its bytes and row ranges).
    assert sorted(p.partition_id for p in added.version.partitions) == sorted(
        p.partition_id for p in first.version.partitions
    )

    # With the default size the four files are one split: removing one re-reads the others.
    packed = ingest_flow(spec=str(DEMO_SPEC), source=str(landing), lake=lake)
    assert packed.files_read == 4 and len(packed.version.partitions) == 1
    (landing / "customers-0000.csv").unlink()
    again = ingest_flow(spec=str(DEMO_SPEC), source=str(landing), lake=lake)
    assert again.files_read == 3 and again.version.rows == 4500
