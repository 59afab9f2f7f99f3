"""Large files are streamed and cut, hashed as they are read; damage anywhere in them sets
the file aside, naming it and where, and leaves nothing half-written."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tasks.ingest.read as read
from tasks.demo_data import encode, make_frame
from tasks.ingest.partitions import ingest_split
from tasks.lake import Lake
from tasks.spec import DatasetSpec, load_spec
from tests.support.ingesting import (
    ingest_paths,
    ingest_source,
    landing_file,
    one_split,
    with_ingest,
)

pytestmark = pytest.mark.timeout(60)
ROWS = 20_000


@pytest.fixture
def spec(demo_spec: str, monkeypatch: pytest.MonkeyPatch) -> DatasetSpec:
    """Streaming at a small scale: files over 64 KiB are streamed in 64 KiB blocks (2,000
    Parquet rows) and cut into partitions of about 256 KiB."""
    monkeypatch.setattr(read, "WHOLE_FILE_BYTES", 64 * 1024)
    monkeypatch.setattr(read, "CSV_BLOCK_BYTES", 64 * 1024)
    monkeypatch.setattr(read, "PARQUET_BATCH_ROWS", 2000)
    return with_ingest(load_spec(demo_spec), partition_size="256KiB")


@pytest.fixture(scope="module")
def frame():  # type: ignore[no-untyped-def]
    return make_frame(ROWS, seed=5)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def parquet_bytes(frame, row_group_size: int) -> bytes:  # type: ignore[no-untyped-def]
    sink = pa.BufferOutputStream()
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), sink, row_group_size=row_group_size
    )
    return bytes(sink.getvalue())


def no_temporaries(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_a_large_file_is_streamed_and_cut_into_bounded_pieces(
    fmt: str,
    spec: DatasetSpec,
    frame,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    data = parquet_bytes(frame, 2500) if fmt == "parquet" else encode(frame, fmt)
    path = write(tmp_path / f"big.{fmt}", data)
    assert path.stat().st_size > read.WHOLE_FILE_BYTES
    outcome = ingest_paths([path], spec, Lake(str(tmp_path / "lake")))
    assert outcome.quarantined == []
    pieces = outcome.partitions
    assert len(pieces) >= 3
    # Contiguous pieces of the file, in order, all of its rows, each near the target.
    starts = [p.segments[0].file_start for p in pieces]
    assert starts == [sum(p.rows for p in pieces[:i]) for i in range(len(pieces))]
    assert sum(p.rows for p in pieces) == ROWS
    target = spec.ingest.partition_bytes
    for piece in pieces:
        table = pq.read_table(piece.uri.removeprefix("file://"))
        assert table.num_rows == piece.rows and table.nbytes < 2 * target
    # Hashed while read: the hash of the whole file's bytes.
    assert {s.sha256 for p in pieces for s in p.segments} == {hashlib.sha256(data).hexdigest()}
    ids = [p.partition_id for p in pieces]
    assert len(set(ids)) == len(ids)
    again = ingest_paths([path], spec, Lake(str(tmp_path / "lake")))
    assert [p.partition_id for p in again.partitions] == ids and again.written == []


def test_a_gzip_file_truncated_in_its_middle_is_set_aside_and_its_pieces_removed(
    spec: DatasetSpec,
    frame,
    demo_source: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    data = gzip.compress(encode(frame, "csv"), mtime=0)
    bad = write(tmp_path / "b-cut.csv.gz", data[: len(data) * 2 // 3])
    before = write(tmp_path / "a.csv", (demo_source / "customers-0000.csv").read_bytes())
    after = write(tmp_path / "c.csv", (demo_source / "customers-0003.csv").read_bytes())
    root = tmp_path / "lake"
    outcome = ingest_paths([before, bad, after], spec, Lake(str(root)))
    (record,) = outcome.quarantined
    assert record.source_uri.endswith("b-cut.csv.gz")
    # The row where it broke is named when the parser got that far before the stream's
    # read-ahead hit the cut (the read-ahead thread may get there first).
    assert re.search(r"truncated or corrupt \(csv\.gz\)( after row [\d,]+)?: ", record.reason)
    assert str(bad) in record.reason
    # Its partition-mates go on; of the bad file, not a row, not a file.
    named = {Path(s.source_uri).name for p in outcome.partitions for s in p.segments}
    assert named == {"a.csv", "c.csv"}
    assert sum(p.rows for p in outcome.partitions) == 3000
    on_disk = list((root / "datasets" / "customers" / "partitions").glob("*.parquet"))
    assert len(on_disk) == len(outcome.partitions) and no_temporaries(root)


def test_a_parquet_file_with_a_corrupt_row_group_names_the_row_group(
    spec: DatasetSpec,
    frame,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    data = bytearray(parquet_bytes(frame, 2500))
    metadata = pq.ParquetFile(pa.BufferReader(bytes(data))).metadata
    column = metadata.row_group(4).column(3)  # well inside the file
    start = column.data_page_offset
    data[start : start + 64] = b"\xff" * 64
    bad = write(tmp_path / "damaged.parquet", bytes(data))
    root = tmp_path / "lake"
    outcome = ingest_paths([bad], spec, Lake(str(root)))
    (record,) = outcome.quarantined
    assert f"{bad}: row group 4 (rows from 10,001)" in record.reason
    assert outcome.partitions == [] and no_temporaries(root)
    assert not list(root.rglob("*.parquet"))


def test_a_csv_whose_later_rows_have_an_extra_column_is_set_aside(
    spec: DatasetSpec,
    frame,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    lines = encode(frame, "csv").decode().splitlines()
    lines[15_000] += ",surprise"
    bad = write(tmp_path / "extra-later.csv", ("\n".join(lines) + "\n").encode())
    root = tmp_path / "lake"
    outcome = ingest_paths([bad], spec, Lake(str(root)))
    (record,) = outcome.quarantined
    assert record.reason.startswith(f"file://{bad}: cannot parse as csv after row 1")
    assert "Expected 13 columns, got 14" in record.reason
    assert outcome.partitions == [] and no_temporaries(root)


@pytest.mark.parametrize("big", [False, True])
def test_a_store_failure_is_retried_not_blamed_on_the_file(
    big: bool,
    spec: DatasetSpec,
    frame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """A dropped connection is the store's failure: the task fails (and Prefect retries
    it); the file is not quarantined."""
    from fsspec.implementations.local import LocalFileOpener, LocalFileSystem

    path = write(tmp_path / "f.csv", encode(frame if big else frame.head(100), "csv"))

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise ConnectionResetError("connection reset by peer")

    # Faked where the store is reached: the filesystem's read calls.
    monkeypatch.setattr(LocalFileSystem, "cat_file", refuse)
    monkeypatch.setattr(LocalFileOpener, "read", refuse)
    root = tmp_path / "lake"
    with pytest.raises(read.LandingReadError, match=r"f\.csv: could not read"):
        ingest_paths([path], spec, Lake(str(root)))
    assert not (root / "datasets" / "customers" / "quarantine").exists()
    assert no_temporaries(root)


def test_a_small_gzip_file_of_much_text_is_decompressed_as_a_stream(
    spec: DatasetSpec,
    frame,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """A few compressed kilobytes can hold megabytes of rows: cut as they are inflated."""
    header, body = encode(frame.head(100), "csv").split(b"\n", 1)
    text = header + b"\n" + body * 200  # 20,000 rows of a repeated block
    path = write(tmp_path / "dense.csv.gz", gzip.compress(text, mtime=0))
    assert path.stat().st_size <= read.WHOLE_FILE_BYTES < len(text)
    outcome = ingest_paths([path], spec, Lake(str(tmp_path / "lake")))
    assert sum(p.rows for p in outcome.partitions) == 20_000 and len(outcome.partitions) >= 3
    for piece in outcome.partitions:
        table = pq.read_table(piece.uri.removeprefix("file://"))
        assert table.nbytes < 2 * spec.ingest.partition_bytes
    assert {s.sha256 for p in outcome.partitions for s in p.segments} == {
        hashlib.sha256(path.read_bytes()).hexdigest()
    }


@pytest.mark.parametrize(
    ("name", "rows"), [("small.csv", 200), ("big.csv", ROWS), ("big.parquet", ROWS)]
)
def test_a_file_written_to_while_it_is_read_is_set_aside_and_read_again_once_it_changes(
    name: str,
    rows: int,
    spec: DatasetSpec,
    frame,
    demo_source: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Listed, then appended to before it is read (an upload in progress)."""
    fmt = name.split(".", 1)[1]
    growing = write(tmp_path / name, encode(frame.head(rows), fmt) if fmt == "csv" else b"")
    if fmt == "parquet":
        growing.write_bytes(parquet_bytes(frame.head(rows), 2500))
    mate = write(tmp_path / "a.csv", (demo_source / "customers-0000.csv").read_bytes())
    split = one_split([landing_file(mate), landing_file(growing)], spec)
    listed = growing.stat().st_size
    with growing.open("ab") as more:
        more.write(b"x" * 1000)  # an upload's next chunk
    root = tmp_path / "lake"
    outcome = ingest_split(split=split, spec=spec, lake=Lake(str(root)))
    (record,) = outcome.quarantined
    assert record.reason.startswith(f"file://{growing}: changed while it was read")
    assert f"listed {listed:,} bytes, read {listed + 1000:,}" in record.reason
    # Its partition-mate goes on; none of its rows are kept.
    named = {Path(s.source_uri).name for p in outcome.partitions for s in p.segments}
    assert named == {"a.csv"} and no_temporaries(root)
    # Listed again, it is another file (its tag follows its size): the next run reads it.
    assert landing_file(growing).tag != split.files[1].tag


def test_a_symbolic_link_to_nothing_is_set_aside_by_name_and_a_link_loop_is_not_followed(
    spec: DatasetSpec,
    demo_source: Path,
    tmp_path: Path,
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    write(landing / "a.csv", (demo_source / "customers-0000.csv").read_bytes())
    (landing / "gone.csv").symlink_to(tmp_path / "never-there.csv")
    (landing / "loop").symlink_to(landing)  # listing must not walk round it for ever
    outcomes = ingest_source(landing, spec, Lake(str(tmp_path / "lake")))
    (record,) = [q for o in outcomes for q in o.quarantined]
    assert record.reason == (
        f"file://{landing}/gone.csv: a symbolic link to a file that does not exist"
    )
    named = {Path(s.source_uri).name for o in outcomes for p in o.partitions for s in p.segments}
    assert named == {"a.csv"}
