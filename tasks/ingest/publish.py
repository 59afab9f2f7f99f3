"""What the ingest stage shows in the Prefect UI: a table of partitions and quarantined files."""

from __future__ import annotations

from typing import Any

from tasks.records import IngestResult
from tasks.runtime.publish import artifact_key, publish_table


def ingest_table(result: IngestResult) -> list[dict[str, Any]]:
    """One row per partition and per quarantined file."""
    version = result.version
    new = set(result.new_partitions)
    return [
        {
            "source": p.source_uri.rsplit("/", 1)[-1],
            "status": "new" if p.partition_id in new else "unchanged",
            "partition": p.partition_id,
            "rows": p.rows,
            "bytes": p.bytes,
            "reason": "",
        }
        for p in version.partitions
    ] + [
        {
            "source": q.source_uri.rsplit("/", 1)[-1],
            "status": "quarantined",
            "partition": "",
            "rows": 0,
            "bytes": 0,
            "reason": q.reason,
        }
        for q in version.quarantined
    ]


def publish_ingest_summary(result: IngestResult) -> None:
    """Table artifact of this run's partitions and quarantined files."""
    version = result.version
    publish_table(
        key=artifact_key("ingest", version.dataset),
        table=ingest_table(result),
        description=(
            f"Dataset {version.dataset} version {version.version}: {version.rows:,} rows, "
            f"{len(version.partitions)} partitions ({len(result.new_partitions)} new), "
            f"{len(version.quarantined)} quarantined"
        ),
    )
