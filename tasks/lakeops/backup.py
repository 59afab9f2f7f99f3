"""Backup and restore: an incremental copy of one lake into another, in dependency order.

Any two fsspec locations (a folder, ``s3://bucket/prefix`` in another bucket or region).
Only what the target lacks is copied: content-addressed files (partitions, model files,
predictions, cache records) by name and size, records that are rewritten in place
(pointers, indexes, scoring manifests) by their bytes. Data goes first, then the records
naming it, then the pointers (``aliases.json``, ``latest.json``): a backup interrupted at
any point is a lake whose records name only what it holds, and running it again finishes
it. The target is verified at the end. Nothing is ever deleted from the target; restoring
is the same copy the other way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tasks.errors import LakeError
from tasks.lake import Lake
from tasks.lakeops.identity import check_format, ensure_identity, read_identity
from tasks.lakeops.inventory import LakeObject, inventory
from tasks.lakeops.verify import verify
from tasks.records import BackupReport
from tasks.runtime.lease import lake_in_use
from tasks.storage import copy_between

logger = logging.getLogger(__name__)

COPY_THREADS = 16
MAX_PASSES = 3
# Runtime state of the source, not the lake's content.
NOT_COPIED = frozenset({"temporary", "lease"})
# Written once under a name that their content decides: equal size means the same object.
WRITTEN_ONCE = frozenset(
    {
        "partition",
        "prediction",
        "model-file",
        "model-metadata",
        "dataset-version",
        "checkpoint",
        "decision",
        "gc-record",
        "dask-report",
        "cache-record",
    }
)
# Copy order: the identity first (an interrupted target is already this lake's copy), then
# data, then what names data, then what names records.
PHASES: list[frozenset[str]] = [
    frozenset({"identity"}),
    frozenset(
        {"partition", "prediction", "model-file", "checkpoint", "report", "dask-report", "other"}
    ),
    frozenset(
        {"quarantine", "validation", "dataset-version", "cache-record", "decision", "gc-record"}
    ),
    frozenset({"model-metadata", "landing-index", "scoring-manifest", "scoring-index"}),
    frozenset({"pointer"}),
]


def check_target(source: Lake, target: Lake, source_id: str) -> list[LakeObject]:
    """The target's objects, after refusing one that cannot be reached, that is another
    lake, or that holds files and is no lake at all."""
    try:
        if not target.is_local:
            # A missing bucket lists as empty: say so before copying into nowhere.
            bucket = target.path().split("/", 1)[0]
            if not target.fs.exists(bucket):
                raise LakeError(
                    f"{target.uri}: bucket '{bucket}' does not exist or cannot be reached"
                )
        objects = inventory(target)
    except (OSError, ValueError) as err:
        raise LakeError(f"{target.uri}: cannot reach the backup target: {err}") from None
    if not objects:
        return objects
    identity = read_identity(target)
    if identity is None:
        shown = ", ".join(o.path for o in objects[:3])
        raise LakeError(
            f"{target.uri}: holds {len(objects)} file(s) ({shown}, ...) and is not a lake; "
            "back up into an empty location or an earlier backup of this lake"
        )
    if identity.lake_id != source_id:
        raise LakeError(
            f"{target.uri}: is another lake (id {identity.lake_id}, this one is {source_id}); "
            "back up into an empty location or an earlier backup of this lake"
        )
    check_format(target)
    return objects


def _needs_copy(source: Lake, target: Lake, o: LakeObject, there: LakeObject | None) -> bool:
    if there is None or there.bytes != o.bytes:
        return True
    if o.kind in WRITTEN_ONCE:
        return False
    return source.read_bytes(source.path(o.path)) != target.read_bytes(target.path(o.path))


def backup(
    source: Lake,
    target: Lake,
    *,
    on_phase: Callable[[int, int], None] | None = None,
    verify_deep: bool = False,
) -> BackupReport:
    """Copy ``source`` into ``target`` (see the module); ``on_phase(phase, files)`` is told
    what each phase copies."""
    started = time.monotonic()
    if source.uri.rstrip("/") == target.uri.rstrip("/"):
        raise LakeError(f"{source.uri}: a lake cannot be backed up into itself")
    check_format(source)
    if not source.exists(source.path()):
        raise LakeError(f"{source.uri}: no lake there")
    identity = ensure_identity(source)
    present = {o.path: o for o in check_target(source, target, identity.lake_id)}
    total, copied = 0, []
    # Marked in use, so no gc deletes what is being copied. Runs may write meanwhile: a
    # pointer copied last may name a record written after the listing, so the copy is
    # repeated until a pass finds nothing new.
    with lake_in_use(source, what="lake backup"), ThreadPoolExecutor(COPY_THREADS) as pool:
        for _ in range(MAX_PASSES):
            objects = [o for o in inventory(source) if o.kind not in NOT_COPIED]
            total = len(objects)
            needed = pool.map(
                lambda o: _needs_copy(source, target, o, present.get(o.path)), objects
            )
            todo = [o for o, need in zip(objects, needed, strict=True) if need]
            if not todo:
                break
            for number, kinds in enumerate(PHASES, start=1):
                phase = [o for o in todo if o.kind in kinds]
                if on_phase is not None:
                    on_phase(number, len(phase))
                # Each phase is finished before the next starts: the order is the guarantee.
                list(pool.map(lambda o: _copy(source, target, o), phase))
            copied += todo
            present.update({o.path: o for o in todo})
    logger.info(
        "Copied %d of %d object(s) from %s to %s", len(copied), total, source.uri, target.uri
    )
    checked = verify(target, deep=verify_deep)
    return BackupReport(
        source=source.uri,
        target=target.uri,
        objects=total,
        copied=len(copied),
        copied_bytes=sum(o.bytes for o in copied),
        skipped=total - len({o.path for o in copied}),
        verified=checked,
        seconds=round(time.monotonic() - started, 3),
    )


def _copy(source: Lake, target: Lake, o: LakeObject) -> None:
    out = target.path(o.path)
    # S3 writes are whole or nothing already; on a disk, a temporary file renamed into place.
    partial = target.temporary(out) if target.is_local else None
    copy_between(source.fs, source.path(o.path), target.fs, out, partial=partial)
