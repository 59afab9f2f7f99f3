"""Landing folders as tests see them."""

from __future__ import annotations

from tasks.ingest.landing import list_landing


def landing_uris(source: str) -> list[str]:
    """The URIs of the landing files under ``source``, as ingestion lists them."""
    return [f.uri for f in list_landing(source)]
