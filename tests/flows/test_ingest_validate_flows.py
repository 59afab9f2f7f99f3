from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.ingest import ingest_flow
from flows.validate import validate_flow
from tasks.errors import SourceError, ValidationFailed
from tests.support.artifacts import read_artifact

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def test_ingest_quarantines_bad_files_and_reingests_nothing_on_rerun(
    demo_spec: str, defect_source: Path, lake: str
) -> None:
    first = ingest_flow(spec=demo_spec, source=str(defect_source), lake=lake)
    version = first.version
    assert len(version.partitions) == 5 and len(first.new_partitions) == 5
    assert sorted(Path(q.source_uri).name for q in version.quarantined) == [
        "customers-0001.csv.gz",
        "customers-0003.csv",
        "customers-0004.csv.gz",
    ]
    manifest = json.loads(Path(version.manifest_uri.removeprefix("file://")).read_text())
    assert manifest["version"] == version.version and len(manifest["partitions"]) == 5
    table, artifact = read_artifact("ingest-customers")
    assert {row["status"] for row in table} == {"new", "quarantined"}
    assert "5 partitions (5 new), 3 quarantined" in artifact.description

    again = ingest_flow(spec=demo_spec, source=str(defect_source), lake=lake)
    assert again.version.version == version.version
    assert again.new_partitions == [] and len(again.reused_partitions) == 5
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
    assert len(report.accepted) == 4 and report.accepted_fraction == 0.5
    [rejected] = [p for p in report.partitions if not p.success]
    assert rejected.source_uri.endswith("customers-0002.parquet")
    failed = {o.column for o in rejected.expectations if not o.success}
    assert failed == {"age", "monthly_charges"}
    record = json.loads(
        (
            Path(lake) / "datasets" / "customers" / "quarantine" / f"{rejected.partition_id}.json"
        ).read_text()
    )
    assert record["stage"] == "validate" and record["report"]["failed"] == 2
    assert "customers-0002.parquet: failed 2 of" in record["reason"]

    table, artifact = read_artifact("validation-customers")
    assert len(table) == 5
    row = next(r for r in table if r["source"] == "customers-0002.parquet")
    assert row["success"] is False and row["failed"] == 2 and "(age)" in row["failed expectations"]
    assert "4/8 files accepted (50%, threshold 50%); passed" in artifact.description


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
