"""Reading landing files as a stream of typed tables, hashing their bytes on the way.

A file is never held whole unless it is small: CSV and gzip CSV are parsed block by block
from a stream, Parquet row group by row group. Every table is cast to the spec's schema as
it is read, and the file's SHA-256 is computed from the same bytes (Parquet, read out of
order, is hashed in one sequential pass first). Errors name the file and, where known, the
rows.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, suppress
from typing import Any, BinaryIO, TypeVar, cast

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from tasks.errors import PartitionError
from tasks.ingest.cast import NULL_VALUES, cast_to_schema, csv_nulls
from tasks.ingest.landing import source_format
from tasks.records import LandingFile
from tasks.spec import DatasetSpec
from tasks.storage import HASH_CHUNK_BYTES, url_to_fs

T = TypeVar("T")
# Files up to this size are read in one request and parsed from memory; larger ones are
# streamed (a worker then holds one block, not the file).
WHOLE_FILE_BYTES = 8 * 2**20
# Bytes of CSV text parsed at a time when streaming (pyarrow's block size), and the most
# rows per batch when streaming a Parquet row group (fewer when rows are wide).
CSV_BLOCK_BYTES = 2**20
PARQUET_BATCH_ROWS = 128 * 1024
PARQUET_BUFFER_BYTES = 8 * 2**20
# Small files fetched ahead of the one being parsed: at most this many, of these bytes.
PREFETCH_FILES = 64
PREFETCH_BYTES = 64 * 2**20
# What the readers raise on a damaged file: truncated or corrupt compression, bad CSV,
# unreadable Parquet pages.
READ_ERRORS = (EOFError, OSError, zlib.error, gzip.BadGzipFile, pa.ArrowException, ValueError)
# What makes a file be quarantined, not the run fail (the store's own failures, a
# ``LandingReadError``, are retried instead and must be caught before these).
FILE_ERRORS = (PartitionError, *READ_ERRORS, KeyError)


def file_error_reason(uri: str, err: BaseException) -> str:
    """Why a file is set aside: a ``PartitionError`` names the file and the rows already;
    anything else the readers raised is named with the file."""
    if isinstance(err, PartitionError):
        return str(err)
    return f"{uri}: cannot read ({type(err).__name__}): {err}"


class LandingReadError(OSError):
    """The store did not return a landing file's bytes (throttling, a dropped connection):
    not the file's fault, so the task is retried rather than the file quarantined."""


def _storage(action: str, uri: str, call: Callable[[], T]) -> T:
    """``call()``, a request to the store; its failure a ``LandingReadError`` naming ``uri``
    (a file gone since it was listed is the file's problem: a ``PartitionError``)."""
    try:
        return call()
    except FileNotFoundError:
        raise PartitionError(f"{uri}: no longer there (removed after it was listed)") from None
    except OSError as err:
        raise LandingReadError(f"{uri}: could not {action}: {err}") from err


class HashingReader:
    """A binary stream that hashes every byte read through it."""

    def __init__(self, raw: BinaryIO, uri: str) -> None:
        self.raw = raw
        self.uri = uri
        self.sha = hashlib.sha256()
        self.bytes = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = _storage("read", self.uri, lambda: self.raw.read(size))
        self.sha.update(data)
        self.bytes += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def drain(self) -> None:
        """Read (and hash) the rest, so the hash covers the whole file."""
        while self.read(HASH_CHUNK_BYTES):
            pass

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


def _dangling_link(fs: Any, path: str) -> bool:
    """Whether ``path`` is a symbolic link to nothing (a local store lists it as empty)."""
    return isinstance(fs, LocalFileSystem) and os.path.islink(path) and not os.path.exists(path)


def is_small(file: LandingFile) -> bool:
    """Whether ``file`` is read whole, in one request."""
    return file.bytes <= WHOLE_FILE_BYTES


def fetch(uri: str) -> bytes:
    """A small file's bytes, in one request."""
    fs, path = url_to_fs(uri)
    return _storage("read", uri, lambda: bytes(fs.cat_file(path)))


def prefetch(
    files: list[LandingFile], pool: ThreadPoolExecutor, *, ahead_bytes: int = PREFETCH_BYTES
) -> Iterator[tuple[LandingFile, Future[bytes] | None]]:
    """``files`` in order, each small one with its bytes being fetched in ``pool`` while the
    ones before it are parsed: thousands of small files on an object store cost their
    requests' latency once per batch, not once per file. At most ``ahead_bytes`` are
    fetched ahead."""
    queued: deque[tuple[LandingFile, Future[bytes] | None]] = deque()
    upcoming = iter(files)
    ahead = 0
    while True:
        for file in upcoming:
            small = is_small(file)
            queued.append((file, pool.submit(fetch, file.uri) if small else None))
            ahead += file.bytes if small else 0
            if ahead >= ahead_bytes or len(queued) >= PREFETCH_FILES:
                break
        if not queued:
            return
        file, data = queued.popleft()
        ahead -= file.bytes if data is not None else 0
        yield file, data


class StoreFile:
    """A seekable landing file whose reads report a store failure as ``LandingReadError``
    (Parquet is read through it by column chunk, out of order)."""

    def __init__(self, raw: Any, uri: str) -> None:
        self.raw = raw
        self.uri = uri

    def read(self, size: int = -1) -> bytes:
        return _storage("read", self.uri, lambda: self.raw.read(size))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class FileReader:
    """One landing file read as typed tables (``tables()``); afterwards, its ``sha256``,
    ``rows`` and the columns it had beyond the spec's (``dropped``)."""

    def __init__(
        self,
        file: LandingFile,
        spec: DatasetSpec,
        *,
        data: Future[bytes] | None = None,
        optional: frozenset[str] = frozenset(),
    ) -> None:
        self.file = file
        self.spec = spec
        # Columns a file may lack (the target, at scoring): read as nulls.
        self.optional = optional
        # A small file's bytes, already being fetched (see ``prefetch``).
        self.data = data
        # Tables of at most about this size, so that partitions can be cut near their size.
        self.block_bytes = max(16 * 1024, min(CSV_BLOCK_BYTES, spec.ingest.partition_bytes // 4))
        self.format = source_format(file.uri) or ""
        self.sha256 = ""
        # Bytes read (and hashed): a file still being written has more than were listed.
        self.bytes_read = 0
        self.rows = 0
        self.dropped: list[str] = []

    def tables(self) -> Iterator[pa.Table]:
        """The file's rows in order, cast to the spec's schema; ``PartitionError`` naming the
        file (and the rows, where known) if it cannot be read or cast."""
        uri = self.file.uri
        if not self.format:
            raise PartitionError(f"{uri}: unsupported file type")
        fs, path = url_to_fs(uri)
        if self.file.bytes == 0:
            if _dangling_link(fs, path):
                raise PartitionError(f"{uri}: a symbolic link to a file that does not exist")
            raise PartitionError(f"{uri}: file is empty")
        try:
            if self.file.bytes <= WHOLE_FILE_BYTES:
                data = self.data.result() if self.data is not None else fetch(uri)
                yield from self._whole(data)
            elif self.format == "parquet":
                yield from self._parquet_stream(fs, path)
            else:
                yield from self._csv_stream(lambda: fs.open(path, "rb"))
        except LandingReadError:
            raise
        except FILE_ERRORS:
            # Bytes appended mid-read look like a broken last line: the change is the cause.
            if self.bytes_read and self.bytes_read != self.file.bytes:
                raise self._changed() from None
            raise
        if self.bytes_read != self.file.bytes:
            raise self._changed()
        if self.rows == 0:
            raise PartitionError(f"{uri}: file has a header but no rows")

    def _changed(self) -> PartitionError:
        """A file whose bytes are not those listed was written to while it was read: its
        rows may end mid-line, so none are kept. Its listing tag changes with it, so the
        next run reads it again."""
        return PartitionError(
            f"{self.file.uri}: changed while it was read (listed {self.file.bytes:,} bytes, "
            f"read {self.bytes_read:,}); it is read again once it changes. Upload under a "
            "hidden or _-prefixed name and rename when complete"
        )

    # Small files: one request, parsed from memory ------------------------------------------
    def _whole(self, data: bytes) -> Iterator[pa.Table]:
        if not data:
            raise PartitionError(f"{self.file.uri}: file is empty")
        self.bytes_read = len(data)
        if self.format == "csv.gz":
            # Decompressed as a stream all the same: a few compressed megabytes can hold
            # gigabytes of text.
            yield from self._csv_stream(lambda: io.BytesIO(data))
            return
        self.sha256 = hashlib.sha256(data).hexdigest()
        try:
            if self.format == "parquet":
                table = pq.read_table(pa.BufferReader(data))
            else:
                table = pacsv.read_csv(pa.BufferReader(data), convert_options=self._convert())
        except READ_ERRORS as err:
            raise self._damaged(err) from None
        table = table if self.format == "parquet" else csv_nulls(table, self.spec)
        # In slices of about a streamed block, so the writer can cut where it needs to.
        step = max(1, table.num_rows * self.block_bytes // max(table.nbytes, 1))
        # At least once: a file with a header only is checked against the schema too.
        for start in range(0, max(table.num_rows, 1), step):
            yield self._cast(table.slice(start, step))

    # Large files: streamed ----------------------------------------------------------------
    def _csv_stream(self, opener: Callable[[], Any]) -> Iterator[pa.Table]:
        with ExitStack() as stack:
            raw = _storage("open", self.file.uri, opener)
            hashing = HashingReader(stack.enter_context(raw), self.file.uri)
            text: Any = hashing
            if self.format == "csv.gz":
                text = stack.enter_context(gzip.GzipFile(fileobj=cast(Any, hashing), mode="rb"))
            try:
                reader = pacsv.open_csv(
                    text,
                    read_options=pacsv.ReadOptions(block_size=self.block_bytes, use_threads=False),
                    convert_options=self._convert(),
                )
                for batch in reader:
                    yield self._cast(csv_nulls(pa.Table.from_batches([batch]), self.spec))
            except LandingReadError:
                raise
            except READ_ERRORS as err:
                raise self._damaged(err) from None
            finally:
                # Whatever the file did, the hash covers every byte (a quarantine record is
                # keyed by it).
                with suppress(LandingReadError):
                    hashing.drain()
                self.sha256 = hashing.hexdigest()
                self.bytes_read = hashing.bytes

    def _parquet_stream(self, fs: Any, path: str) -> Iterator[pa.Table]:
        # Parquet is read footer first and by column chunks: hash the bytes in order first.
        uri = self.file.uri
        with _storage("open", uri, lambda: fs.open(path, "rb")) as raw:
            hashing = HashingReader(raw, uri)
            hashing.drain()
        self.sha256 = hashing.hexdigest()
        self.bytes_read = hashing.bytes
        if self.bytes_read != self.file.bytes:
            raise self._changed()  # before parsing a footer that may be for other bytes
        try:
            with _storage("open", uri, lambda: fs.open(path, "rb")) as raw:
                # Buffered, page by page: memory follows the batch, not the row group.
                parquet = pq.ParquetFile(
                    StoreFile(raw, uri), buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False
                )
                for group in range(parquet.num_row_groups):
                    first = self.rows
                    # Batches of about a CSV block, so the writer can cut where it needs to.
                    meta = parquet.metadata.row_group(group)
                    per_block = meta.num_rows * self.block_bytes // max(meta.total_byte_size, 1)
                    rows = max(256, min(PARQUET_BATCH_ROWS, per_block))
                    try:
                        for batch in parquet.iter_batches(batch_size=rows, row_groups=[group]):
                            yield self._cast(pa.Table.from_batches([batch]))
                    except LandingReadError:
                        raise
                    except READ_ERRORS as err:
                        raise PartitionError(
                            f"{self.file.uri}: row group {group} (rows from {first + 1:,}) is "
                            f"corrupt or unreadable: {err}"
                        ) from None
        except (PartitionError, LandingReadError):
            raise
        except READ_ERRORS as err:
            raise self._damaged(err) from None

    # Shared -------------------------------------------------------------------------------
    def _convert(self) -> pacsv.ConvertOptions:
        return pacsv.ConvertOptions(
            # Text first, then our own cast: its errors can name the column.
            column_types={name: pa.string() for name in self.spec.columns},
            null_values=NULL_VALUES,
            strings_can_be_null=False,
        )

    def _cast(self, table: pa.Table) -> pa.Table:
        where = self.file.uri
        if self.rows:
            where = f"{self.file.uri} (rows from {self.rows + 1:,})"
        cast, dropped = cast_to_schema(table, spec=self.spec, uri=where, optional=self.optional)
        self.dropped = dropped
        self.rows += cast.num_rows
        return cast

    def _damaged(self, err: BaseException) -> PartitionError:
        where = f" after row {self.rows:,}" if self.rows else ""
        if isinstance(err, EOFError | OSError | zlib.error | gzip.BadGzipFile):
            return PartitionError(
                f"{self.file.uri}: file is truncated or corrupt ({self.format}){where}: {err}"
            )
        return PartitionError(f"{self.file.uri}: cannot parse as {self.format}{where}: {err}")
