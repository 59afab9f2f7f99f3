"""Ingestion: landing files become typed, content-addressed Parquet partitions.

One landing file makes one partition named by the hash of the file's bytes and of the
spec's schema, so an unchanged file is never processed twice and a changed file becomes a
new partition. A file that cannot be read or cast is quarantined with the reason; the
others go on.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from prefect import task

from tasks.caching import ContentKey
from tasks.errors import LakeError, PartitionError, SourceError
from tasks.lake import Lake
from tasks.models import (
    DatasetVersion,
    IngestOutcome,
    IngestResult,
    LandingFile,
    PartitionRef,
    QuarantineRecord,
)
from tasks.retries import IO_RETRIES
from tasks.spec import ColumnSpec, DatasetSpec, stable_hash
from tasks.storage import url_to_fs

SUFFIXES: tuple[str, ...] = (".csv.gz", ".csv", ".parquet")
NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]
PARTITION_METADATA_KEY = b"mlops.partition"
ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "datetime": pa.timestamp("us"),
}


# Discovery ---------------------------------------------------------------------------------
def source_format(uri: str) -> str | None:
    """``csv``, ``csv.gz`` or ``parquet`` from the file name; None for anything else."""
    name = uri.lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix.lstrip(".")
    return None


def discover_sources(source: str) -> list[str]:
    """Every landing file under ``source`` (a folder, a single file, local or ``s3://``)."""
    return [f.uri for f in list_landing(source)]


def discover_landing(source: str) -> dict[str, int]:
    """Every landing file under ``source`` with its size in bytes (one listing call)."""
    return {f.uri: f.bytes for f in list_landing(source)}


def list_landing(source: str) -> list[LandingFile]:
    """Every landing file under ``source``, sorted, with its size and content tag."""
    fs, root = url_to_fs(source)
    try:
        if not fs.exists(root):
            raise SourceError(f"{source}: landing location does not exist")
        found = {root: fs.info(root)} if fs.isfile(root) else fs.find(root, detail=True)
    except PermissionError as err:
        raise SourceError(f"{source}: cannot list landing location: {err}") from None
    # Hidden and underscore names (files or folders, e.g. Spark's _temporary/) are the
    # conventions for in-flight uploads and markers.
    base = root.rstrip("/")
    files = [
        LandingFile(
            uri=fs.unstrip_protocol(path),
            bytes=int(info.get("size") or 0),
            tag=content_tag(info),
        )
        for path, info in sorted(found.items())
        if source_format(path) and not _hidden(path.removeprefix(base).strip("/"))
    ]
    if not files:
        raise SourceError(
            f"{source}: no landing files found (looked for {', '.join(SUFFIXES)}; "
            "hidden and _-prefixed files are ignored)"
        )
    return files


def content_tag(info: Mapping[str, Any]) -> str:
    """The store's identity of a file's bytes, from its listing entry (nothing is read).

    Object stores give a content hash (S3's ETag, GCS's md5Hash/crc32c); a disk gives size,
    modification time and inode, which change whenever the file is rewritten or replaced.
    """
    size = info.get("size")
    for field in ("ETag", "etag", "md5Hash", "crc32c"):
        if info.get(field):
            return f"{field}={str(info[field]).strip(chr(34))};size={size}"
    stamps = ("mtime", "LastModified", "last_modified", "ino")
    return ";".join([f"size={size}", *(f"{k}={info[k]}" for k in stamps if info.get(k))])


def _hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


# Reading and casting -------------------------------------------------------------------
def read_table(data: bytes, *, fmt: str, uri: str, spec: DatasetSpec) -> pa.Table:
    """Parse one landing file; spec columns in CSV are read as text and cast afterwards."""
    try:
        if fmt == "parquet":
            return pq.read_table(pa.BufferReader(data))
        if fmt == "csv.gz":
            data = gzip.decompress(data)
        table = pacsv.read_csv(
            pa.BufferReader(data),
            convert_options=pacsv.ConvertOptions(
                # Text first, then our own cast: its errors can name the column.
                column_types={name: pa.string() for name in spec.columns},
                null_values=NULL_VALUES,
                strings_can_be_null=False,
            ),
        )
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as err:
        raise PartitionError(f"{uri}: file is truncated or corrupt ({fmt}): {err}") from None
    except (pa.ArrowException, ValueError) as err:
        raise PartitionError(f"{uri}: cannot parse as {fmt}: {err}") from None
    return _csv_nulls(table, spec)


def _csv_nulls(table: pa.Table, spec: DatasetSpec) -> pa.Table:
    """Apply CSV null markers by column type.

    "NA" or "None" can be real values of a text column (North America, a category named
    None), so text columns treat only empty fields as missing; typed columns also accept
    the usual markers (NA, null, NaN, ...).
    """
    for i, name in enumerate(table.column_names):
        column = spec.columns.get(name)
        array = table.column(i)
        if column is None or not pa.types.is_string(array.type):
            continue
        markers = [""] if column.type in ("string", "category") else NULL_VALUES
        missing = pc.is_in(array, value_set=pa.array(markers, pa.string()))
        table = table.set_column(i, name, pc.if_else(missing, pa.scalar(None, pa.string()), array))
    return table


def cast_column(array: pa.ChunkedArray, column: ColumnSpec) -> pa.ChunkedArray:
    """Cast one column to its spec type; raises ``pa.ArrowInvalid`` with pyarrow's reason."""
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    is_text = pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
    if column.type == "category":
        text = array if is_text else pc.cast(array, pa.string())
        return pc.dictionary_encode(text)
    if is_text and column.type in ("int", "float", "bool"):
        array = pc.utf8_trim_whitespace(array)
    if column.type == "datetime":
        if not (is_text or pa.types.is_timestamp(array.type) or pa.types.is_date(array.type)):
            # Epoch numbers carry no unit (s? ms? us?); guessing would shift every date.
            raise pa.ArrowInvalid(
                "numbers have no time unit; store ISO 8601 text, a date or a timestamp"
            )
        if pa.types.is_timestamp(array.type) and array.type.tz is not None:
            return pc.cast(array, pa.timestamp("us", "UTC")).cast(pa.timestamp("us"))
        try:
            return pc.cast(array, pa.timestamp("us"))
        except pa.ArrowInvalid as naive_error:
            if not is_text:
                raise
            # Some values carry a zone offset: read them all as ISO 8601 (naive ones as UTC),
            # normalise to UTC and drop the zone. Report the plain error if even that fails.
            try:
                parsed = pd.to_datetime(array.to_pandas(), utc=True, format="ISO8601")
            except (ValueError, TypeError):
                raise naive_error from None
            return pa.chunked_array([pa.array(parsed.dt.tz_convert(None), type=pa.timestamp("us"))])
    return pc.cast(array, ARROW_TYPES[column.type])


def cast_to_schema(table: pa.Table, *, spec: DatasetSpec, uri: str) -> tuple[pa.Table, list[str]]:
    """The table with exactly the spec's columns, in order and typed; plus columns dropped."""
    repeated = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
    if repeated:
        raise PartitionError(
            f"{uri}: column(s) {', '.join(map(repr, repeated))} appear more than once"
        )
    missing = [name for name in spec.columns if name not in table.column_names]
    if missing:
        raise PartitionError(
            f"{uri}: missing column(s) {', '.join(repr(m) for m in missing)} "
            f"(file has: {', '.join(table.column_names)})"
        )
    arrays = []
    for name, column in spec.columns.items():
        source = table.column(name)
        try:
            arrays.append(cast_column(source, column))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            kind = (
                "text"
                if pa.types.is_string(source.type) or pa.types.is_large_string(source.type)
                else source.type
            )
            raise PartitionError(
                f"{uri}: column '{name}': cannot cast {kind} to {column.type}: {err}"
            ) from None
    dropped = [name for name in table.column_names if name not in spec.columns]
    return pa.Table.from_arrays(arrays, names=list(spec.columns)), dropped


def distinct_values(table: pa.Table, spec: DatasetSpec) -> dict[str, list[str]]:
    """Distinct non-null values of category columns and of a classification target."""
    columns = [n for n, c in spec.columns.items() if c.type == "category"]
    if spec.task != "regression" and spec.target not in columns:
        columns.append(spec.target)
    out: dict[str, list[str]] = {}
    for name in columns:
        array = table.column(name)
        if pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)
        values = pc.unique(array.drop_null()).to_pylist()
        out[name] = sorted(str(v) for v in values)
    return out


# One file ----------------------------------------------------------------------------------
def partition_id(source_hash: str, schema_hash: str) -> str:
    return hashlib.sha256(f"{source_hash}:{schema_hash}".encode()).hexdigest()[:24]


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


def encode_partition(table: pa.Table, ref: PartitionRef, spec: DatasetSpec) -> bytes:
    """Parquet bytes carrying the partition's own description in the file footer."""
    meta = ref.model_dump_json(exclude={"uri", "bytes"}).encode()
    table = table.replace_schema_metadata({PARTITION_METADATA_KEY: meta})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", use_dictionary=dictionary_columns(spec))
    return buf.getvalue()


def read_partition_ref(lake: Lake, path: str) -> PartitionRef:
    """Describe an existing partition from its footer, without reading its data."""
    with lake.fs.open(path, "rb") as fh:
        metadata = pq.read_schema(fh).metadata or {}
    fields = json.loads(metadata[PARTITION_METADATA_KEY])
    return PartitionRef(**fields, uri=lake.fs.unstrip_protocol(path), bytes=lake.fs.size(path))


def ingest_file(
    *, source_uri: str, spec: DatasetSpec, lake: Lake, rewrite: bool = False
) -> IngestOutcome:
    """Turn one landing file into a partition (or reuse it), or quarantine it with the reason.

    ``rewrite`` (a refresh run) processes the file again even when a partition or a
    quarantine record for the same bytes exists, and replaces it.
    """
    fmt = source_format(source_uri)
    fs, path = url_to_fs(source_uri)
    data = bytes(fs.cat_file(path))
    source_hash = hashlib.sha256(data).hexdigest()
    pid = partition_id(source_hash, spec.schema_hash())
    target = lake.partition(spec.name, pid)
    if not rewrite and lake.exists(target):
        # Same bytes as an earlier file: reuse its partition, under the name it has now.
        ref = read_partition_ref(lake, target).model_copy(update={"source_uri": source_uri})
        return IngestOutcome(partition=ref, reused=True)
    known = lake.quarantine(spec.name, pid)
    if not rewrite and lake.exists(known):
        # Same bytes, same schema: it would fail the same way again.
        record = QuarantineRecord.model_validate(lake.read_json(known))
        if record.stage == "ingest":
            return IngestOutcome(
                quarantined=record.model_copy(update={"source_uri": source_uri}), reused=True
            )
    try:
        if fmt is None:
            raise PartitionError(f"{source_uri}: unsupported file type")
        if not data:
            raise PartitionError(f"{source_uri}: file is empty")
        table, dropped = cast_to_schema(
            read_table(data, fmt=fmt, uri=source_uri, spec=spec), spec=spec, uri=source_uri
        )
        if table.num_rows == 0:
            raise PartitionError(f"{source_uri}: file has a header but no rows")
    except (PartitionError, pa.ArrowException, ValueError, KeyError) as err:
        # Whatever the file did to the reader, it is this file's problem, not the run's.
        reason = (
            str(err)
            if isinstance(err, PartitionError)
            else (f"{source_uri}: cannot read ({type(err).__name__}): {err}")
        )
        record = QuarantineRecord(
            record_id=pid, stage="ingest", source_uri=source_uri, reason=reason
        )
        lake.write_json(lake.quarantine(spec.name, record.record_id), record)
        return IngestOutcome(quarantined=record)
    ref = PartitionRef(
        partition_id=pid,
        uri=lake.fs.unstrip_protocol(target),
        source_uri=source_uri,
        source_hash=source_hash,
        source_format=fmt,
        rows=table.num_rows,
        bytes=0,
        distinct=distinct_values(table, spec),
        dropped_columns=dropped,
    )
    blob = encode_partition(table, ref, spec)
    lake.write_bytes(target, blob)
    return IngestOutcome(partition=ref.model_copy(update={"bytes": len(blob)}))


# The version -------------------------------------------------------------------------------
def build_version(
    *, spec: DatasetSpec, lake: Lake, source: str, outcomes: Iterable[IngestOutcome]
) -> IngestResult:
    """Write the dataset version manifest (content-addressed, so re-runs reuse it)."""
    outcomes = list(outcomes)
    partitions = sorted((o.partition for o in outcomes if o.partition), key=lambda p: p.source_uri)
    quarantined = sorted(
        (o.quarantined for o in outcomes if o.quarantined), key=lambda q: q.source_uri
    )
    # Two landing files with identical bytes are one partition, listed once.
    unique = list({p.partition_id: p for p in partitions}.values())
    version_id = stable_hash(
        {
            "schema": spec.schema_hash(),
            "partitions": sorted(p.partition_id for p in unique),
            "quarantined": sorted(q.record_id for q in quarantined),
        }
    )
    path = lake.version(spec.name, version_id)
    if lake.exists(path):
        # Same content as a version written before; report the files under today's names.
        version = DatasetVersion.model_validate(lake.read_json(path)).model_copy(
            update={"source_uri": source, "partitions": unique, "quarantined": quarantined}
        )
    else:
        version = DatasetVersion(
            dataset=spec.name,
            version=version_id,
            source_uri=source,
            spec_hash=spec.spec_hash(),
            schema_hash=spec.schema_hash(),
            partitions=unique,
            quarantined=quarantined,
            manifest_uri=lake.url_of(path),
        )
        lake.write_json(path, version)
    lake.write_json(lake.dataset(spec.name, "latest.json"), {"version": version_id})
    return IngestResult(
        version=version,
        new_partitions=[o.partition.partition_id for o in outcomes if o.partition and not o.reused],
        reused_partitions=[o.partition.partition_id for o in outcomes if o.partition and o.reused],
    )


def load_version(
    lake: Lake, dataset: str, version: str | None = None, *, schema_hash: str | None = None
) -> DatasetVersion:
    """A dataset version manifest by id, or the latest one written.

    With ``schema_hash``, refuse a version ingested under another schema: its partitions
    lack the spec's columns or hold them with other types.
    """
    if version is None:
        latest = lake.dataset(dataset, "latest.json")
        if not lake.exists(latest):
            raise LakeError(
                f"{lake.uri}: dataset '{dataset}' has no versions yet; run ingestion first"
            )
        version = str(lake.read_json(latest)["version"])
    path = lake.version(dataset, version)
    if not lake.exists(path):
        raise LakeError(f"{lake.url_of(path)}: no such dataset version")
    found = DatasetVersion.model_validate(lake.read_json(path))
    if schema_hash is not None and found.schema_hash != schema_hash:
        raise LakeError(
            f"dataset '{dataset}' version {found.version} was ingested with other columns or "
            "types than the spec now declares; run ingestion with this spec first"
        )
    return found


# Tasks -----------------------------------------------------------------------------------------
@task(name="discover-landing-files", **IO_RETRIES)
def list_landing_task(source: str) -> list[LandingFile]:
    """List the landing files to ingest."""
    return list_landing(source)


@task(name="sweep-lake-temporaries", **IO_RETRIES)
def sweep_temporaries_task(lake: str) -> list[str]:
    """Reclaim temporary files of lake writers that were killed mid-write (see Lake)."""
    return Lake(lake).sweep_temporaries()


@task(name="measure-landing-files", **IO_RETRIES)
def discover_landing_task(source: str) -> dict[str, int]:
    """List the landing files to ingest, with their sizes (to size the ingest cluster)."""
    return discover_landing(source)


def ingest_identity(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What an ``ingest-file`` result depends on (its cache key, see ``tasks/caching.py``)."""
    source: LandingFile = inputs["source"]
    spec: DatasetSpec = inputs["spec"]
    # The URI is part of it: the outcome names the file it came from.
    return {
        "source": source.uri,
        "content": source.tag,
        "schema": spec.schema_hash(),
        "lake": inputs["lake"],
    }


INGEST_CACHE = ContentKey(identity=ingest_identity)


@task(name="ingest-file", **IO_RETRIES)
def ingest_file_task(
    *, source: LandingFile, spec: DatasetSpec, lake: str, rewrite: bool = False
) -> IngestOutcome:
    """Ingest one landing file on a Dask worker."""
    return ingest_file(source_uri=source.uri, spec=spec, lake=Lake(lake), rewrite=rewrite)


@task(name="load-dataset-version", **IO_RETRIES)
def load_version_task(*, lake: str, spec: DatasetSpec, version: str | None) -> DatasetVersion:
    """Read a dataset version manifest (default: the latest) that matches the spec's schema."""
    return load_version(Lake(lake), spec.name, version, schema_hash=spec.schema_hash())


@task(name="write-dataset-version")
def build_version_task(
    *, spec: DatasetSpec, lake: str, source: str, outcomes: list[IngestOutcome]
) -> IngestResult:
    """Write the version manifest for this run's partitions."""
    return build_version(spec=spec, lake=Lake(lake), source=source, outcomes=outcomes)
