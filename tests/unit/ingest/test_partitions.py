"""A split's files become bounded, typed, content-addressed partitions; bad files are set
aside one by one and their partition-mates go on."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.ingest.partitions import PARTITION_METADATA_KEY, file_record_id
from tasks.lake import Lake
from tasks.spec import DatasetSpec, load_spec
from tests.support.ingesting import ingest_paths, with_ingest

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def spec(demo_spec: str) -> DatasetSpec:
    return load_spec(demo_spec)


def lake_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_small_files_are_packed_into_one_partition_in_order(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    paths = sorted(demo_source.iterdir())
    outcome = ingest_paths(paths, spec, lake)
    (partition,) = outcome.partitions
    assert partition.rows == 6000 and outcome.quarantined == []
    assert [Path(s.source_uri).name for s in partition.segments] == [p.name for p in paths]
    assert [(s.start, s.rows, s.file_start) for s in partition.segments] == [
        (0, 1500, 0),
        (1500, 1500, 0),
        (3000, 1500, 0),
        (4500, 1500, 0),
    ]
    assert partition.label.endswith("/customers-0000.csv (+3 files)")
    table = pq.read_table(partition.uri.removeprefix("file://"))
    assert table.column_names == list(spec.columns) and table.num_rows == 6000
    assert table.schema.field("age").type == pa.int64()
    assert table.schema.field("signup_date").type == pa.timestamp("us")
    assert pa.types.is_dictionary(table.schema.field("contract").type)
    # The rows of each file, in order: the segment's rows are the file's rows.
    first = pd.read_csv(paths[0])
    assert table.column("customer_id").to_pylist()[:1500] == first["customer_id"].tolist()
    assert partition.distinct["churned"] == ["False", "True"]
    assert partition.distinct["contract"] == ["month-to-month", "one-year", "two-year"]
    # Each file has every value of the partition: nothing more is kept per file.
    assert all(s.distinct == {} for s in partition.segments)
    # The footer says where the rows come from.
    described = json.loads(table.schema.metadata[PARTITION_METADATA_KEY])
    assert [s["rows"] for s in described["segments"]] == [1500] * 4
    assert outcome.written == [partition.partition_id]


def test_the_same_rows_are_the_same_partition_and_a_changed_file_another(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    source = tmp_path / "one.csv"
    source.write_bytes((demo_source / "customers-0000.csv").read_bytes())
    first = ingest_paths([source], spec, lake)
    again = ingest_paths([source], spec, lake)
    assert again.partitions == first.partitions and again.written == []
    # A whole file alone keeps the id 0.1 gave its partition.
    (segment,) = first.partitions[0].segments
    assert first.partitions[0].partition_id == file_record_id(segment.sha256, spec.schema_hash())
    frame = pd.read_csv(source)
    frame.loc[0, "age"] = 42 if frame.loc[0, "age"] != 42 else 43
    frame.to_csv(source, index=False)
    changed = ingest_paths([source], spec, lake)
    assert changed.partitions[0].partition_id != first.partitions[0].partition_id
    assert not [f for f in lake_files(tmp_path / "lake") if ".tmp-" in f]


def test_rewrite_replaces_an_existing_partition(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    source = demo_source / "customers-0000.csv"
    (first,) = ingest_paths([source], spec, lake).partitions
    target = Path(first.uri.removeprefix("file://"))
    target.write_bytes(b"damaged")  # what a refresh is for
    again = ingest_paths([source], spec, lake, rewrite=True)
    assert again.partitions == [first] and again.written == [first.partition_id]
    assert pq.read_table(target).num_rows == 1500


def test_every_defect_is_quarantined_alone_and_its_partition_mates_go_on(
    spec: DatasetSpec, defect_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    outcome = ingest_paths(sorted(defect_source.iterdir()), spec, lake)
    reasons = {Path(q.source_uri).name: q.reason for q in outcome.quarantined}
    assert set(reasons) == {"customers-0001.csv.gz", "customers-0003.csv", "customers-0004.csv.gz"}
    assert "column 'age': cannot cast text to int" in reasons["customers-0001.csv.gz"]
    assert "'unknown'" in reasons["customers-0001.csv.gz"]
    assert "missing column(s) 'monthly_charges'" in reasons["customers-0003.csv"]
    assert "truncated or corrupt" in reasons["customers-0004.csv.gz"]
    for name, reason in reasons.items():
        assert name in reason
    # The five good files (out-of-range values are well typed: validation's job) are one
    # partition, without a row of the bad ones.
    (partition,) = outcome.partitions
    named = [Path(s.source_uri).name for s in partition.segments]
    assert named == [f"customers-000{i}.{e}" for i, e in [(0, "csv"), (2, "parquet")]] + [
        "customers-0005.parquet",
        "customers-0006.csv",
        "customers-0007.csv.gz",
    ]
    assert partition.rows == 5000
    records = list((tmp_path / "lake" / "datasets" / "customers" / "quarantine").glob("*.json"))
    assert len(records) == 3
    assert {json.loads(r.read_text())["stage"] for r in records} == {"ingest"}


def test_truncated_csv_and_parquet_are_caught(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    cuts = []
    for name in ["customers-0000.csv", "customers-0002.parquet"]:
        data = (demo_source / name).read_bytes()
        cut = tmp_path / f"cut-{name}"
        cut.write_bytes(data[: len(data) // 2 + 3])
        cuts.append(cut)
    outcome = ingest_paths(cuts, spec, lake)
    assert outcome.partitions == []
    assert sorted(Path(q.source_uri).name for q in outcome.quarantined) == sorted(
        c.name for c in cuts
    )
    for record in outcome.quarantined:
        assert record.source_uri.rsplit("/", 1)[-1] in record.reason


def test_a_file_with_the_same_bytes_as_another_is_ingested_once(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy-of-0000.csv"
    copy.write_bytes((demo_source / "customers-0000.csv").read_bytes())
    outcome = ingest_paths(
        [demo_source / "customers-0000.csv", copy], spec, Lake(str(tmp_path / "lake"))
    )
    assert [p.rows for p in outcome.partitions] == [1500]
    (record,) = outcome.quarantined
    assert record.source_uri.endswith("copy-of-0000.csv") and "same bytes as" in record.reason


def test_extra_columns_are_dropped_and_reported(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(demo_source / "customers-0000.csv")
    frame["extra"] = 1
    path = tmp_path / "extra.csv.gz"
    buf = io.BytesIO()
    frame.to_csv(buf, index=False)
    path.write_bytes(gzip.compress(buf.getvalue()))
    (partition,) = ingest_paths([path], spec, Lake(str(tmp_path / "lake"))).partitions
    assert partition.dropped_columns == ["extra"]


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
    (partition,) = ingest_paths([path], spec, Lake(str(tmp_path / "lake"))).partitions
    table = pq.read_table(partition.uri.removeprefix("file://"))
    assert table.column("region").to_pylist() == ["NA", "EU", "None"]
    assert table.column("note").to_pylist() == ["NA", None, "x"]
    assert table.column("amount").to_pylist() == [None, 1.5, None]


def test_duplicate_header_is_quarantined_not_fatal(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lines = (demo_source / "customers-0000.csv").read_text().splitlines()
    path = tmp_path / "dup.csv"
    path.write_text("\n".join([lines[0] + ",age", *(line + ",1" for line in lines[1:50])]) + "\n")
    outcome = ingest_paths([path], spec, Lake(str(tmp_path / "lake")))
    assert outcome.partitions == []
    assert outcome.quarantined[0].reason == f"file://{path}: column(s) 'age' appear more than once"


def test_packing_respects_the_row_limit(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    small = with_ingest(spec, partition_rows=3000)
    outcome = ingest_paths(sorted(demo_source.iterdir()), small, Lake(str(tmp_path / "lake")))
    assert [len(p.segments) for p in outcome.partitions] == [2, 2]
    assert [p.rows for p in outcome.partitions] == [3000, 3000]
