"""How every part of the pipeline opens files: one place for storage options.

S3 fails transiently (503 SlowDown when throttling, 500s, dropped connections). Each S3
request is retried by the client with adaptive backoff before a task ever sees an error;
task retries (``tasks/retries.py``) then cover what outlasts those.
"""

from __future__ import annotations

import hashlib
import posixpath
import shutil
from typing import Any

import fsspec

# botocore's "adaptive" mode: exponential backoff with jitter plus client-side rate limiting
# when S3 throttles; 10 attempts outlast a burst of failures without hiding an outage.
S3_RETRIES = {"max_attempts": 10, "mode": "adaptive"}
# Files are hashed while read in pieces of this size: memory stays flat whatever the file.
HASH_CHUNK_BYTES = 8 * 2**20
COPY_CHUNK_BYTES = 1 << 20


def storage_options(uri: str) -> dict[str, Any]:
    """fsspec options for ``uri`` (empty for local paths)."""
    if uri.startswith(("s3://", "s3a://")):
        return {"config_kwargs": {"retries": dict(S3_RETRIES)}}
    return {}


def url_to_fs(uri: str, **options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """``fsspec.core.url_to_fs`` with this package's storage options."""
    fs, path = fsspec.core.url_to_fs(uri, **{**storage_options(uri), **options})
    return fs, path


def dot_segments_problem(uri: str) -> str | None:
    """Why ``uri`` names no place as written: an object store's keys are literal, so a ``..``
    segment is not its parent folder there (a path on disk is resolved as usual)."""
    scheme, _, rest = uri.partition("://")
    if rest and scheme not in ("file", "local") and ".." in rest.split("/"):
        return (
            f"{uri}: '..' is not a parent folder in an object store (its keys are literal); "
            "write the prefix out in full"
        )
    return None


def open_file(uri: str, mode: str = "rb", **kwargs: Any) -> Any:
    """``fsspec.open`` with this package's storage options."""
    return fsspec.open(uri, mode, **storage_options(uri), **kwargs)


def file_sha256(uri: str) -> str:
    """The SHA-256 of the file at ``uri``, read in pieces."""
    sha = hashlib.sha256()
    with open_file(uri, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            sha.update(chunk)
    return sha.hexdigest()


class HashingWriter:
    """A binary file being written, hashed on the way (Parquet writers take it as a sink),
    so a written file's hash costs no second read."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self._sha = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self.bytes += len(data)
        written: int = self._fh.write(data)
        return written

    def tell(self) -> int:
        return self.bytes

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        """The underlying file is closed by whoever opened it."""

    @property
    def closed(self) -> bool:
        return bool(self._fh.closed)

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def copy_between(
    in_fs: fsspec.AbstractFileSystem,
    in_path: str,
    out_fs: fsspec.AbstractFileSystem,
    out_path: str,
    *,
    partial: str | None = None,
) -> None:
    """Copy a file: within one store by the store's own copy (server-side on S3: the bytes
    never pass through here), across two stores streamed. With ``partial``, written there
    first and then moved to ``out_path``, so readers never see a part of it."""
    landing = partial or out_path
    out_fs.makedirs(posixpath.dirname(landing), exist_ok=True)
    if in_fs is out_fs or (
        type(in_fs) is type(out_fs) and in_fs.storage_options == out_fs.storage_options
    ):
        in_fs.copy(in_path, landing)
    else:
        with in_fs.open(in_path, "rb") as reader, out_fs.open(landing, "wb") as writer:
            shutil.copyfileobj(reader, writer, COPY_CHUNK_BYTES)
    if partial is not None:
        out_fs.mv(partial, out_path)
