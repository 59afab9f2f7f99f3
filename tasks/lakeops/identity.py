"""``<lake>/lake.json``: which format a lake is written in, and which lake it is.

Lake operations delete and copy; before they do, they check that this release understands
the lake (a lake written by a newer release may hold records it would misread as
unreferenced) and, for a backup, that the target is empty or a copy of the same lake. The
file is written once, by the first lake operation, and copied by backups, so a backup and
its source share one identity.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field, ValidationError

from tasks.errors import LakeError
from tasks.lake import Lake
from tasks.records import utcnow

# 1: release 0.1 (no lake.json); 2: bounded partitions, leases, lake operations.
LAKE_FORMAT = 2
IDENTITY_FILE = "lake.json"


class LakeIdentity(BaseModel):
    format: int
    lake_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = Field(default_factory=utcnow)


def read_identity(lake: Lake) -> LakeIdentity | None:
    """The lake's identity; None when it has none yet (or does not exist)."""
    path = lake.path(IDENTITY_FILE)
    if not lake.exists(path):
        return None
    try:
        return LakeIdentity.model_validate(lake.read_json(path))
    except (ValueError, ValidationError) as err:
        raise LakeError(f"{lake.url_of(path)}: not a lake identity file: {err}") from None


def check_format(lake: Lake) -> LakeIdentity | None:
    """The lake's identity, after refusing a lake written in a format newer than this
    release's."""
    identity = read_identity(lake)
    if identity is not None and identity.format > LAKE_FORMAT:
        raise LakeError(
            f"{lake.url_of(lake.path(IDENTITY_FILE))}: the lake is in format "
            f"{identity.format}, written by a newer release of mlops-pipelines (this one "
            f"understands format {LAKE_FORMAT}); upgrade before operating on it"
        )
    return identity


def ensure_identity(lake: Lake) -> LakeIdentity:
    """The lake's identity, written now if it has none (of racing writers, one wins)."""
    identity = check_format(lake)
    if identity is not None:
        return identity
    lake.create(
        lake.path(IDENTITY_FILE), LakeIdentity(format=LAKE_FORMAT).model_dump_json().encode()
    )
    found = read_identity(lake)
    assert found is not None  # created just now, by us or a racing writer
    return found
