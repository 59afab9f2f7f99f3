"""What the ingest stage shows in the Prefect UI: a table of partitions and quarantined files."""

from __future__ import annotations

from typing import Any

from tasks.records import IngestResult
from tasks.runtime.publish import artifact_key, publish_table


def ingest_table(result: IngestResult) -> list[dict[str, Any]]:
    """One row per landing file: the partition(s) its rows are in, or why it was set aside."""
    version = result.version
    new = set(result.new_partitions)
    files: dict[str, dict[str, Any]] = {}
    for partition in version.partitions:
        for segment in partition.segments:
            row = files.setdefault(
                segment.source_uri,
                {
                    "source": segment.source_uri.rsplit("/", 1)[-1],
                    "status": "unchanged",
                    "partitions": [],
                    "rows": 0,
                    "reason": "",
                },
            )
            row["partitions"].append(partition.partition_id)
            row["rows"] += segment.rows
            if partition.partition_id in new:
                row["status"] = "new"
    rows = [{**row, "partitions": ", ".join(row["partitions"])} for row in files.values()]
    return rows + [
        {
            "source": q.source_uri.rsplit("/", 1)[-1],
            "status": "quarantined",
            "partitions": "",
            "rows": 0,
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
            f"Dataset {version.dataset} version {version.version}: {version.rows:,} rows of "
            f"{len(version.files)} landing files in {len(version.partitions)} partitions "
            f"({len(result.new_partitions)} new; {result.files_read} files read now), "
            f"{len(version.quarantined)} files quarantined"
        ),
    )
