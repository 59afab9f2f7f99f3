"""A split's landing files become typed Parquet partitions of bounded size.

The files are read in order as a stream of typed tables (``read.py``). Rows of whole files
are packed together until a partition reaches the spec's ``ingest.partition_size``; a file
that is larger on its own is cut into pieces of about that size as it is read, so a worker
holds at most about two partitions' worth of rows, never a whole large file.

Partitions are written to temporary files first and named when the split is done, by the
content of their rows' sources: each piece's file hash and row range, and the schema. The
same rows always make the same partition, which an unchanged or re-read file then reuses. A
file that cannot be read or cast is quarantined with the reason and its rows are dropped,
including pieces already written; its partition-mates go on.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.ingest.cast import distinct_values
from tasks.ingest.read import (
    FILE_ERRORS,
    FileReader,
    LandingReadError,
    file_error_reason,
    prefetch,
)
from tasks.lake import Lake
from tasks.records import LandingFile, PartitionRef, QuarantineRecord, Segment, Split, SplitOutcome
from tasks.spec import DatasetSpec
from tasks.storage import HashingWriter, file_sha256

PARTITION_METADATA_KEY = b"mlops.partition"
# Small files fetched at once (I/O-bound: more threads than cores).
FETCH_THREADS = 8


def file_record_id(sha256: str, schema_hash: str) -> str:
    """The id of what became of one file's bytes under one schema (0.1 named its one-file
    partitions so; quarantine records of a file still are)."""
    return hashlib.sha256(f"{sha256}:{schema_hash}".encode()).hexdigest()[:24]


def partition_id(segments: list[Segment], schema_hash: str, *, whole_file: bool) -> str:
    """A partition's content address: the files and row ranges its rows come from.

    A partition that holds one whole file keeps the id 0.1 gave it, so such partitions of an
    older lake are the same objects.
    """
    if whole_file and len(segments) == 1:
        return file_record_id(segments[0].sha256, schema_hash)
    pieces = [[s.sha256, s.file_start, s.rows] for s in segments]
    blob = json.dumps({"schema": schema_hash, "pieces": pieces}, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def dictionary_columns(spec: DatasetSpec) -> list[str]:
    """Columns worth dictionary-encoding in Parquet: categories and strings, not the key.

    Arrow tries a dictionary for every column by default and falls back once it grows too
    big; on unique keys and continuous numbers that attempt is wasted work (it made writing
    a partition about 4x slower, and the file larger, than encoding just these).
    """
    return [
        name
        for name, column in spec.columns.items()
        if column.type in ("category", "string") and name != spec.key
    ]


@dataclass
class Piece:
    """Rows of one file waiting to be written, and where they start in the file."""

    file: LandingFile
    reader: FileReader
    table: pa.Table
    file_start: int
    # The table's size, measured once (Arrow sums every buffer to tell it).
    nbytes: int = 0


@dataclass
class Written:
    """A partition written to a temporary file, named once its files' hashes are known."""

    temporary: str
    # Each piece's file, its reader, first row in the file, rows and distinct values.
    pieces: list[tuple[LandingFile, FileReader, int, int, dict[str, list[str]]]]
    rows: int
    bytes: int
    # Of the Parquet file as written: ``mlops lake verify --deep`` checks it.
    sha256: str
    distinct: dict[str, list[str]]
    dropped: list[str]


@dataclass
class PartitionWriter:
    """Packs and cuts the rows of a split's files into partitions (see the module doc)."""

    split: Split
    spec: DatasetSpec
    lake: Lake
    pending: list[Piece] = field(default_factory=list)
    written: list[Written] = field(default_factory=list)
    # Size of what is pending, kept as pieces come and go (not summed again each time).
    pending_bytes: int = 0
    pending_rows: int = 0

    @property
    def target_bytes(self) -> int:
        return self.spec.ingest.partition_bytes

    def _full(self, nbytes: int, rows: int) -> bool:
        """Rows of this size make a partition."""
        limit = self.spec.ingest.partition_rows
        return nbytes >= self.target_bytes or (limit is not None and rows >= limit)

    def _over(self, nbytes: int, rows: int) -> bool:
        """Rows of this size are more than one partition."""
        limit = self.spec.ingest.partition_rows
        return nbytes > self.target_bytes or (limit is not None and rows > limit)

    def _hold(self, piece: Piece) -> None:
        self.pending.append(piece)
        self.pending_bytes += piece.nbytes
        self.pending_rows += piece.table.num_rows

    def _flush_pending(self) -> None:
        self._flush(self.pending)
        self.pending, self.pending_bytes, self.pending_rows = [], 0, 0

    def add(self, file: LandingFile, reader: FileReader, *, seen: dict[str, str]) -> str | None:
        """Read ``file`` and pack or cut its rows.

        On a bad file all of its rows are dropped, pieces already written included
        (``PartitionError`` and the readers' errors propagate, for the caller to quarantine
        it). A file with the same bytes as one read before (``seen``: hash to URI) adds
        nothing: the earlier file's URI is returned.
        """
        own: list[Written] = []
        current: list[pa.Table] = []
        nbytes = rows = file_start = 0
        try:
            for table in reader.tables():
                current.append(table)
                nbytes += table.nbytes
                rows += table.num_rows
                if self.pending and self._over(
                    self.pending_bytes + nbytes, self.pending_rows + rows
                ):
                    # Whole earlier files first: they make a partition of their own.
                    self._flush_pending()
                if self._full(nbytes, rows):
                    # This file alone fills a partition: write the piece now, hold no more.
                    piece = Piece(file, reader, pa.concat_tables(current), file_start, nbytes)
                    own.append(self._flush([piece]))
                    file_start += piece.table.num_rows
                    current, nbytes, rows = [], 0, 0
        except BaseException:
            self._discard(own)
            raise
        duplicate = seen.setdefault(reader.sha256, file.uri)
        if duplicate != file.uri:
            self._discard(own)
            return duplicate
        if current:
            self._hold(Piece(file, reader, pa.concat_tables(current), file_start, nbytes))
            if self._full(self.pending_bytes, self.pending_rows):
                self._flush_pending()
        return None

    def _distinct(self, table: pa.Table) -> dict[str, list[str]]:
        return distinct_values(table, self.spec)

    def _discard(self, partials: list[Written]) -> None:
        for partial in partials:
            self.lake.remove(partial.temporary)
            self.written.remove(partial)

    def _flush(self, pieces: list[Piece]) -> Written:
        table = pa.concat_tables([p.table for p in pieces])
        path = self.lake.temporary(self.lake.partition(self.spec.name, "partition"))
        described = {
            "split_id": self.split.split_id,
            "schema": self.spec.schema_hash(),
            "segments": [
                {"source_uri": p.file.uri, "tag": p.file.tag, "file_start": p.file_start}
                | {"rows": p.table.num_rows}
                for p in pieces
            ],
        }
        table = table.replace_schema_metadata(
            {PARTITION_METADATA_KEY: json.dumps(described).encode()}
        )
        with self.lake.open_temporary(path) as fh:
            sink = HashingWriter(fh)
            pq.write_table(
                table, sink, compression="zstd", use_dictionary=dictionary_columns(self.spec)
            )
        written = Written(
            temporary=path,
            pieces=[
                (
                    p.file,
                    p.reader,
                    p.file_start,
                    p.table.num_rows,
                    distinct_values(p.table, self.spec),
                )
                for p in pieces
            ],
            rows=table.num_rows,
            bytes=sink.bytes,
            sha256=sink.sha256,
            distinct=self._distinct(table),
            dropped=sorted({c for p in pieces for c in p.reader.dropped}),
        )
        self.written.append(written)
        return written

    def finish(self, *, rewrite: bool) -> tuple[list[PartitionRef], list[str]]:
        """Write what is pending, then name and commit every partition; the partitions,
        and the ids of those this call wrote (the others existed already)."""
        if self.pending:
            self._flush_pending()
        schema = self.spec.schema_hash()
        refs, new = [], []
        for written in self.written:
            segments, start = [], 0
            for file, reader, file_start, rows, found in written.pieces:
                # Only what a file lacks of the partition's values is worth keeping per file
                # (the manifest of 2,000 files packed together stays small).
                distinct = {c: v for c, v in found.items() if v != written.distinct.get(c)}
                segments.append(
                    Segment(
                        source_uri=file.uri,
                        tag=file.tag,
                        sha256=reader.sha256,
                        format=reader.format,
                        file_start=file_start,
                        start=start,
                        rows=rows,
                        distinct=distinct,
                    )
                )
                start += rows
            whole = len(written.pieces) == 1 and written.pieces[0][1].rows == written.rows
            pid = partition_id(segments, schema, whole_file=whole)
            target = self.lake.partition(self.spec.name, pid)
            size, sha = written.bytes, written.sha256
            if self.lake.commit(written.temporary, target, replace=rewrite):
                new.append(pid)
            else:
                # The same rows written before, maybe by another pyarrow: that file is the one.
                size, sha = int(self.lake.fs.size(target)), file_sha256(self.lake.url_of(target))
            refs.append(
                PartitionRef(
                    partition_id=pid,
                    uri=self.lake.url_of(target),
                    rows=written.rows,
                    bytes=size,
                    sha256=sha,
                    segments=segments,
                    split_id=self.split.split_id,
                    distinct=written.distinct,
                    dropped_columns=written.dropped,
                )
            )
        return refs, new

    def abandon(self) -> None:
        """Delete every temporary file (the split failed as a whole)."""
        for written in self.written:
            self.lake.remove(written.temporary)
        self.written = []


def ingest_split(
    *, split: Split, spec: DatasetSpec, lake: Lake, rewrite: bool = False
) -> SplitOutcome:
    """Ingest one split's files into partitions; quarantine each file that cannot be read or
    cast, with the reason, and go on with the others.

    ``rewrite`` (a refresh run) replaces partitions that exist already.
    """
    writer = PartitionWriter(split=split, spec=spec, lake=lake)
    quarantined: list[QuarantineRecord] = []
    seen: dict[str, str] = {}
    # Object stores answer many small requests at once: fetch small files ahead.
    pool = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="mlops-fetch")
    try:
        for file, data in prefetch(split.files, pool):
            reader = FileReader(file, spec, data=data)
            try:
                duplicate = writer.add(file, reader, seen=seen)
            except LandingReadError:
                raise  # the store's failure, not the file's: the task is retried
            except FILE_ERRORS as err:
                # Whatever the file did to the reader, it is this file's problem, not the run's.
                reason = file_error_reason(file.uri, err)
                quarantined.append(quarantine(lake, spec, file, reader, reason))
                continue
            if duplicate is not None:
                # The same export dropped twice: its rows are ingested once.
                reason = f"{file.uri}: same bytes as {duplicate}, which is ingested"
                quarantined.append(quarantine(lake, spec, file, reader, reason))
        partitions, new = writer.finish(rewrite=rewrite)
    except BaseException:
        writer.abandon()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return SplitOutcome(
        split_id=split.split_id,
        files=split.files,
        partitions=partitions,
        quarantined=quarantined,
        written=new,
    )


def quarantine_record(
    spec: DatasetSpec,
    file: LandingFile,
    reader: FileReader,
    reason: str,
    *,
    stage: Literal["ingest", "validate", "score"],
) -> QuarantineRecord:
    """Why ``file`` is set aside, keyed by its bytes (or, unread, by its name and tag)."""
    key = reader.sha256 or hashlib.sha256(f"{file.uri}:{file.tag}".encode()).hexdigest()
    return QuarantineRecord(
        record_id=file_record_id(key, spec.schema_hash()),
        stage=stage,
        source_uri=file.uri,
        reason=reason,
    )


def quarantine(
    lake: Lake, spec: DatasetSpec, file: LandingFile, reader: FileReader, reason: str
) -> QuarantineRecord:
    """Set ``file`` aside with ``reason``: a record in the lake (its bytes stay where they are)."""
    record = quarantine_record(spec, file, reader, reason, stage="ingest")
    lake.write_json(lake.quarantine(spec.name, record.record_id), record)
    return record
