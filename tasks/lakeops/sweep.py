"""Garbage collection: mark what the policy keeps, then delete the rest, in order.

A dry run only marks. Applying marks again while holding the lake to itself (no run is
using it; runs that start wait, see ``tasks/runtime/lease.py``), deletes by kind in
``SWEEP_ORDER`` (what references before what it references: a gc killed half-way leaves
records that name only what still exists, and the next gc finishes the job) and writes a
record of what went to ``runs/gc/``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable

from tasks.errors import LakeError
from tasks.lake import Lake
from tasks.lakeops.identity import check_format, ensure_identity
from tasks.lakeops.inventory import LakeObject, inventory
from tasks.lakeops.mark import SWEEP_ORDER, Marked, mark
from tasks.lakeops.policy import RetentionPolicy
from tasks.records import GcReport, KindTotal, utcnow
from tasks.runtime.lease import LeaseRecord, lake_to_itself

logger = logging.getLogger(__name__)

# S3 deletes up to 1,000 keys per request; locally one unlink each.
DELETE_BATCH = 1000


def report(
    lake: Lake,
    marked: Marked,
    policy: RetentionPolicy,
    *,
    dataset: str | None,
    applied: bool,
) -> GcReport:
    return GcReport(
        lake=lake.uri,
        dataset=dataset,
        applied=applied,
        policy=policy.model_dump(),
        objects=len(marked.objects),
        bytes=sum(o.bytes for o in marked.objects),
        garbage={k: KindTotal(objects=n, bytes=b) for k, (n, b) in marked.by_kind().items()},
        paths=[o.path for o in in_sweep_order(marked.garbage)],
        roots=marked.roots,
    )


def in_sweep_order(objects: list[LakeObject]) -> list[LakeObject]:
    """``objects`` in the order a sweep deletes them: by kind in ``SWEEP_ORDER`` (a model
    version's metadata, its commit marker, before its files: a half-deleted version is one
    that does not exist), then by path."""
    return sorted(objects, key=lambda o: (SWEEP_ORDER.index(o.kind), o.path))


def sweep(lake: Lake, garbage: list[LakeObject]) -> list[LakeObject]:
    """Delete ``garbage`` kind by kind in sweep order; what was deleted."""
    ordered = in_sweep_order(garbage)
    for kind in SWEEP_ORDER:
        batch = [o for o in ordered if o.kind == kind]
        for start in range(0, len(batch), DELETE_BATCH):
            paths = [lake.path(o.path) for o in batch[start : start + DELETE_BATCH]]
            if lake.is_local:
                for path in paths:
                    lake.remove(path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    lake.fs.rm(paths)
    if lake.is_local:
        _remove_empty_folders(lake, ordered)
    return ordered


def _remove_empty_folders(lake: Lake, deleted: list[LakeObject]) -> None:
    """Folders left empty by the sweep (a model version's, a checkpoint's), up to the
    folders the layout always has."""
    root = lake.path()
    folders = sorted({os.path.dirname(lake.path(o.path)) for o in deleted}, reverse=True)
    for folder in folders:
        while len(folder) > len(root) and folder.count("/") - root.count("/") > 2:
            try:
                os.rmdir(folder)
            except OSError:
                break  # not empty (or already gone)
            folder = os.path.dirname(folder)


def collect_garbage(
    lake: Lake,
    policy: RetentionPolicy,
    *,
    dataset: str | None = None,
    apply: bool = False,
    wait_seconds: float = 600.0,
    on_wait: Callable[[list[LeaseRecord]], None] | None = None,
) -> GcReport:
    """Mark the lake and, with ``apply``, delete what is not kept (see the module)."""
    check_format(lake)
    if not lake.exists(lake.path()):
        raise LakeError(f"{lake.uri}: no lake there")
    started = utcnow()
    if not apply:
        marked = mark(lake, inventory(lake), policy, now=time.time(), dataset=dataset)
        return report(lake, marked, policy, dataset=dataset, applied=False).model_copy(
            update={"started_at": started, "finished_at": utcnow()}
        )
    ensure_identity(lake)
    with lake_to_itself(lake, what="lake gc", timeout=wait_seconds, on_wait=on_wait):
        # Marked with the lake to itself: what runs wrote before it was is seen.
        marked = mark(lake, inventory(lake), policy, now=time.time(), dataset=dataset)
        sweep(lake, marked.garbage)
        done = report(lake, marked, policy, dataset=dataset, applied=True).model_copy(
            update={"started_at": started, "finished_at": utcnow()}
        )
        path = lake.path("runs", "gc", f"{started:%Y%m%dT%H%M%S%fZ}.json")
        done = done.model_copy(update={"record_uri": lake.url_of(path)})
        lake.write_json(path, done)
    logger.info(
        "Deleted %d object(s), %d bytes, from %s",
        done.garbage_objects,
        done.garbage_bytes,
        lake.uri,
    )
    return done
