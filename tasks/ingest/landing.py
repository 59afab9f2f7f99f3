"""The landing zone: which files arrived, their sizes and the store's identity of their bytes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.errors import SourceError
from tasks.records import LandingFile
from tasks.storage import dot_segments_problem, url_to_fs

SUFFIXES: tuple[str, ...] = (".csv.gz", ".csv", ".parquet")


def source_format(uri: str) -> str | None:
    """``csv``, ``csv.gz`` or ``parquet`` from the file name; None for anything else."""
    name = uri.lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix.lstrip(".")
    return None


def list_landing(source: str) -> list[LandingFile]:
    """Every landing file under ``source``, sorted, with its size and content tag."""
    if problem := dot_segments_problem(source):
        raise SourceError(problem)
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
