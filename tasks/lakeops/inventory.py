"""Every object in a lake, with what it is, its size and its age.

The kinds come from the lake's layout (the README's "The lake" section). Anything the
layout does not name is ``other``, and lake operations never delete it: a file someone put
into the lake by hand is theirs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tasks.lake import Lake

# (pattern on the path below the lake root, kind). First match wins.
_KINDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), kind)
    for p, kind in [
        (r"(^|/)\.tmp-[^/]*$", "temporary"),
        (r"^lake\.json$", "identity"),
        (r"^datasets/[^/]+/partitions/[^/]+\.parquet$", "partition"),
        (r"^datasets/[^/]+/versions/[^/]+\.json$", "dataset-version"),
        (r"^datasets/[^/]+/validations/[^/]+\.json$", "validation"),
        (r"^datasets/[^/]+/quarantine/[^/]+\.json$", "quarantine"),
        (r"^datasets/[^/]+/landing/[^/]+\.json$", "landing-index"),
        (r"^datasets/[^/]+/latest\.json$", "pointer"),
        (r"^models/[^/]+/versions/[^/]+/metadata\.json$", "model-metadata"),
        (r"^models/[^/]+/versions/[^/]+/[^/]+$", "model-file"),
        (r"^models/[^/]+/aliases\.json$", "pointer"),
        (r"^models/[^/]+/decisions/[^/]+\.json$", "decision"),
        (r"^predictions/[^/]+/latest\.json$", "pointer"),
        (r"^predictions/[^/]+/sources/[^/]+\.json$", "scoring-index"),
        (r"^predictions/[^/]+/[^/]+/manifests/[^/]+\.json$", "scoring-manifest"),
        (r"^predictions/[^/]+/[^/]+/[^/]+\.parquet$", "prediction"),
        (r"^runs/results/[^/]+/[^/]+$", "cache-record"),
        (r"^runs/checkpoints/[^/]+/[^/]+/[^/]+$", "checkpoint"),
        (r"^runs/reports/dask/[^/]+/[^/]+$", "dask-report"),
        (r"^runs/reports/[^/]+/[^/]+/[^/]+$", "report"),
        (r"^runs/leases/.+\.json$", "lease"),
        (r"^runs/gc/[^/]+\.json$", "gc-record"),
    ]
]


@dataclass(frozen=True)
class LakeObject:
    """One file in the lake."""

    path: str  # below the lake root, "/"-separated
    kind: str
    bytes: int
    modified: float  # POSIX seconds

    @property
    def parts(self) -> list[str]:
        return self.path.split("/")


def kind_of(path: str) -> str:
    """What the file at ``path`` (below the lake root) is."""
    for pattern, kind in _KINDS:
        if pattern.search(path):
            return kind
    return "other"


def _modified(info: dict[str, Any]) -> float:
    """A listing entry's modification time: ``mtime`` on a disk, ``LastModified`` on S3."""
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
    return 0.0


def inventory(lake: Lake) -> list[LakeObject]:
    """Every file below the lake root, sorted by path (empty for a lake not yet written)."""
    root = lake.path()
    try:
        found = lake.fs.find(root, detail=True, withdirs=False)
    except FileNotFoundError:
        return []
    objects = []
    for path, info in found.items():
        if info.get("type") == "directory":
            continue
        relative = path[len(root) :].lstrip("/") if path.startswith(root) else path
        # A symlink inside a lake is not the lake's: never followed, never deleted.
        if lake.is_local and os.path.islink(path):
            continue
        objects.append(
            LakeObject(
                path=relative,
                kind=kind_of(relative),
                bytes=int(info.get("size") or 0),
                modified=_modified(info),
            )
        )
    return sorted(objects, key=lambda o: o.path)
