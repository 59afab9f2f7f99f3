"""One landing file becomes one partition named by the hash of the file's bytes and of the
spec's schema, so an unchanged file is never processed twice and a changed file becomes a
new partition. A file that cannot be read or cast is quarantined with the reason; the
others go on.
"""

from __future__ import annotations

import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import PartitionError
from tasks.ingest.landing import source_format
from tasks.ingest.read import cast_to_schema, distinct_values, read_table
from tasks.lake import Lake
from tasks.records import IngestOutcome, PartitionRef, QuarantineRecord
from tasks.spec import DatasetSpec
from tasks.storage import url_to_fs

PARTITION_METADATA_KEY = b"mlops.partition"


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
