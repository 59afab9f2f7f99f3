from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.errors import LakeError, PartitionError, SourceError
from tasks.ingest.partitions import ingest_file, read_partition_ref
from tasks.ingest.read import cast_column, cast_to_schema
from tasks.ingest.versions import load_version, write_version
from tasks.lake import Lake
from tasks.spec import ColumnSpec, DatasetSpec, load_spec
from tests.support.landing import landing_uris

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def spec(demo_spec: str) -> DatasetSpec:
    return load_spec(demo_spec)


def test_discovery_finds_supported_files_and_ignores_the_rest(tmp_path: Path) -> None:
    for name in ["a.csv", "b.CSV.GZ", "sub/c.parquet", "notes.txt", ".hidden.csv", "_SUCCESS.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    found = [Path(u).name for u in landing_uris(str(tmp_path))]
    assert found == ["a.csv", "b.CSV.GZ", "c.parquet"]
    assert landing_uris(str(tmp_path / "a.csv"))[0].endswith("/a.csv")


def test_missing_and_empty_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="landing location does not exist"):
        landing_uris(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no data")
    with pytest.raises(SourceError, match=r"empty: no landing files found"):
        landing_uris(str(tmp_path / "empty"))


def test_every_defect_is_quarantined_with_a_reason_naming_the_file(
    spec: DatasetSpec, defect_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    outcomes = {
        Path(u).name: ingest_file(source_uri=u, spec=spec, lake=lake)
        for u in landing_uris(str(defect_source))
    }
    reasons = {name: o.quarantined.reason for name, o in outcomes.items() if o.quarantined}
    assert set(reasons) == {"customers-0001.csv.gz", "customers-0003.csv", "customers-0004.csv.gz"}
    assert "column 'age': cannot cast text to int" in reasons["customers-0001.csv.gz"]
    assert "'unknown'" in reasons["customers-0001.csv.gz"]
    assert "missing column(s) 'monthly_charges'" in reasons["customers-0003.csv"]
    assert "truncated or corrupt" in reasons["customers-0004.csv.gz"]
    for name, reason in reasons.items():
        assert name in reason
    # The record is in the lake, the partition is not.
    records = list((tmp_path / "lake" / "datasets" / "customers" / "quarantine").glob("*.json"))
    assert len(records) == 3
    assert {json.loads(r.read_text())["stage"] for r in records} == {"ingest"}
    # Out-of-range values are well-typed: ingestion accepts them, validation's job.
    assert outcomes["customers-0002.parquet"].partition is not None


def test_truncated_csv_and_parquet_are_caught(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    for name in ["customers-0000.csv", "customers-0002.parquet"]:
        data = (demo_source / name).read_bytes()
        cut = tmp_path / f"cut-{name}"
        cut.write_bytes(data[: len(data) // 2 + 3])
        outcome = ingest_file(source_uri=str(cut), spec=spec, lake=lake)
        assert outcome.quarantined is not None, name
        assert str(cut) in outcome.quarantined.reason


def test_partition_is_typed_and_described_in_its_footer(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    outcome = ingest_file(
        source_uri=str(demo_source / "customers-0001.csv.gz"), spec=spec, lake=lake
    )
    ref = outcome.partition
    assert ref is not None and not outcome.reused
    table = pq.read_table(ref.uri.removeprefix("file://"))
    assert table.column_names == list(spec.columns)
    assert table.schema.field("age").type == pa.int64()
    assert table.schema.field("signup_date").type == pa.timestamp("us")
    assert pa.types.is_dictionary(table.schema.field("contract").type)
    assert table.num_rows == ref.rows == 1500
    assert ref.distinct["churned"] == ["False", "True"]
    assert ref.distinct["contract"] == ["month-to-month", "one-year", "two-year"]
    assert read_partition_ref(lake, lake.partition(spec.name, ref.partition_id)) == ref


def test_unchanged_file_is_reused_and_changed_file_is_a_new_partition(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    source = tmp_path / "one.csv"
    source.write_bytes((demo_source / "customers-0000.csv").read_bytes())
    first = ingest_file(source_uri=str(source), spec=spec, lake=lake)
    again = ingest_file(source_uri=str(source), spec=spec, lake=lake)
    assert again.reused and again.partition == first.partition
    frame = pd.read_csv(source)
    frame.loc[0, "age"] = 42 if frame.loc[0, "age"] != 42 else 43
    frame.to_csv(source, index=False)
    changed = ingest_file(source_uri=str(source), spec=spec, lake=lake)
    assert not changed.reused
    assert changed.partition is not None and first.partition is not None
    assert changed.partition.partition_id != first.partition.partition_id


def test_rewrite_processes_a_known_file_again_and_replaces_its_partition(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    source = str(demo_source / "customers-0000.csv")
    first = ingest_file(source_uri=source, spec=spec, lake=lake)
    assert first.partition is not None
    target = Path(lake.partition(spec.name, first.partition.partition_id))
    target.write_bytes(b"damaged")  # what a refresh is for
    again = ingest_file(source_uri=source, spec=spec, lake=lake, rewrite=True)
    assert not again.reused and again.partition == first.partition
    assert read_partition_ref(lake, str(target)) == first.partition


def test_version_is_content_addressed(spec: DatasetSpec, demo_source: Path, tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    files = landing_uris(str(demo_source))
    outcomes = [ingest_file(source_uri=u, spec=spec, lake=lake) for u in files]
    first = write_version(spec=spec, lake=lake, source=str(demo_source), outcomes=outcomes)
    again = write_version(
        spec=spec,
        lake=lake,
        source=str(demo_source),
        outcomes=[ingest_file(source_uri=u, spec=spec, lake=lake) for u in files],
    )
    assert first.version.version == again.version.version
    assert again.new_partitions == [] and len(again.reused_partitions) == 4
    assert first.version.rows == 6000
    fewer = write_version(spec=spec, lake=lake, source=str(demo_source), outcomes=outcomes[:3])
    assert fewer.version.version != first.version.version
    # "latest" follows the last written version; both stay readable.
    assert load_version(lake, spec.name).version == fewer.version.version
    assert load_version(lake, spec.name, first.version.version) == first.version
    with pytest.raises(LakeError, match="no such dataset version"):
        load_version(lake, spec.name, "0000")
    with pytest.raises(LakeError, match="has no versions yet"):
        load_version(lake, "other")


@pytest.mark.parametrize(
    ("values", "kind", "expected"),
    [
        (["1", " 2 ", None], "int", [1, 2, None]),
        (["1.5", "nan"], "float", [1.5, float("nan")]),
        (["true", "FALSE", "1", "0"], "bool", [True, False, True, False]),
        (["a", "b", "a"], "category", ["a", "b", "a"]),
        (
            ["2024-01-02", "2024-01-02T03:04:05Z"],
            "datetime",
            ["2024-01-02 00:00:00", "2024-01-02 03:04:05"],
        ),
    ],
)
def test_cast_column_from_text(values: list, kind: str, expected: list) -> None:
    result = cast_column(pa.chunked_array([pa.array(values, pa.string())]), ColumnSpec(type=kind))
    got = result.to_pylist()
    if kind == "datetime":
        got = [str(v) for v in got]
    if kind == "float":
        assert got[0] == 1.5 and got[1] != got[1]
    else:
        assert got == expected


def test_cast_errors_name_file_and_column(spec: DatasetSpec) -> None:
    sample = {"int": "1", "float": "1.5", "bool": "true", "category": "a", "string": "s"}
    sample["datetime"] = "2024-01-01"
    frame = pd.DataFrame({name: [sample[c.type]] for name, c in spec.columns.items()})
    frame["is_senior"] = ["maybe"]
    with pytest.raises(
        PartitionError, match=r"f.csv: column 'is_senior': cannot cast text to bool"
    ):
        cast_to_schema(pa.Table.from_pandas(frame), spec=spec, uri="f.csv")


def test_extra_columns_are_dropped_and_reported(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(demo_source / "customers-0000.csv")
    frame["extra"] = 1
    path = tmp_path / "extra.csv.gz"
    buf = io.BytesIO()
    frame.to_csv(buf, index=False)
    path.write_bytes(gzip.compress(buf.getvalue()))
    outcome = ingest_file(source_uri=str(path), spec=spec, lake=Lake(str(tmp_path / "lake")))
    assert outcome.partition is not None and outcome.partition.dropped_columns == ["extra"]


def test_text_columns_keep_na_and_none_as_values(tmp_path: Path) -> None:
    spec = DatasetSpec.model_validate(
        {
            "name": "regions",
            "columns": {
                "region": {"type": "category", "categories": ["NA", "EU", "None"]},
                "note": {"type": "string"},
                "amount": {"type": "float"},
                "y": {"type": "int"},
            },
            "target": "y",
            "task": "binary",
        }
    )
    path = tmp_path / "r.csv"
    path.write_text("region,note,amount,y\nNA,NA,NA,1\nEU,,1.5,0\nNone,x,null,1\n")
    outcome = ingest_file(source_uri=str(path), spec=spec, lake=Lake(str(tmp_path / "lake")))
    assert outcome.partition is not None
    table = pq.read_table(outcome.partition.uri.removeprefix("file://"))
    assert table.column("region").to_pylist() == ["NA", "EU", "None"]
    assert table.column("note").to_pylist() == ["NA", None, "x"]
    assert table.column("amount").to_pylist() == [None, 1.5, None]


def test_numbers_are_not_guessed_into_datetimes(spec: DatasetSpec) -> None:
    with pytest.raises(pa.ArrowInvalid, match="numbers have no time unit"):
        cast_column(pa.chunked_array([pa.array([1_700_000_000])]), ColumnSpec(type="datetime"))


def test_duplicate_header_is_quarantined_not_fatal(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lines = (demo_source / "customers-0000.csv").read_text().splitlines()
    path = tmp_path / "dup.csv"
    path.write_text("\n".join([lines[0] + ",age", *(line + ",1" for line in lines[1:50])]) + "\n")
    outcome = ingest_file(source_uri=str(path), spec=spec, lake=Lake(str(tmp_path / "lake")))
    assert outcome.quarantined is not None
    assert outcome.quarantined.reason == f"{path}: column(s) 'age' appear more than once"


def test_files_in_hidden_or_underscore_folders_are_in_flight(tmp_path: Path) -> None:
    for name in ["ok/a.csv", "_temporary/0/part-0.parquet", ".staging/x.csv", "ok/_b.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert [Path(u).name for u in landing_uris(str(tmp_path))] == ["a.csv"]


def test_a_quarantined_file_is_not_parsed_again_and_renames_are_reported(
    spec: DatasetSpec, defect_source: Path, demo_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    bad = tmp_path / "bad.csv"
    bad.write_bytes((defect_source / "customers-0003.csv").read_bytes())
    first = ingest_file(source_uri=str(bad), spec=spec, lake=lake)
    assert first.quarantined is not None and not first.reused
    renamed = tmp_path / "bad-renamed.csv"
    bad.rename(renamed)
    again = ingest_file(source_uri=str(renamed), spec=spec, lake=lake)
    assert again.reused and again.quarantined is not None
    assert again.quarantined.detected_at == first.quarantined.detected_at  # the stored record
    assert again.quarantined.source_uri == str(renamed)

    good = tmp_path / "good.csv"
    good.write_bytes((demo_source / "customers-0000.csv").read_bytes())
    v1 = write_version(
        spec=spec,
        lake=lake,
        source="s",
        outcomes=[ingest_file(source_uri=str(good), spec=spec, lake=lake)],
    )
    moved = tmp_path / "moved.csv"
    good.rename(moved)
    v2 = write_version(
        spec=spec,
        lake=lake,
        source="s",
        outcomes=[ingest_file(source_uri=str(moved), spec=spec, lake=lake)],
    )
    assert v2.version.version == v1.version.version
    assert [p.source_uri for p in v2.version.partitions] == [str(moved)]


def test_versions_of_another_schema_are_refused(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    outcome = ingest_file(source_uri=str(demo_source / "customers-0000.csv"), spec=spec, lake=lake)
    write_version(spec=spec, lake=lake, source="s", outcomes=[outcome])
    assert load_version(lake, spec.name, schema_hash=spec.schema_hash()).rows == 1500
    with pytest.raises(LakeError, match="ingested with other columns or types"):
        load_version(lake, spec.name, schema_hash="something-else")
