"""The lake: where partitions, manifests, reports and models live (a local path or ``s3://``).

Everything goes through fsspec, so the same code serves a laptop folder and a bucket. S3
endpoints and credentials come from the standard AWS settings (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, profiles, instance roles) that s3fs reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel

from tasks.errors import LakeError
from tasks.storage import dot_segments_problem, url_to_fs

# No single lake write takes an hour; a temporary file that old has lost its writer.
TEMPORARY_GRACE_S = 3600.0


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return float("inf")


def partition_of(uri: str) -> str:
    """The id of the partition at ``uri`` (its file name), wherever the lake holding it is."""
    return uri.rstrip("/").rsplit("/", 1)[-1].removesuffix(".parquet")


@dataclass(frozen=True)
class Lake:
    """A root URI plus the layout below it (the README's "The lake" section shows it)."""

    uri: str
    _fs: fsspec.AbstractFileSystem = field(init=False, repr=False, compare=False)
    _root: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if problem := dot_segments_problem(self.uri):
            raise LakeError(problem)
        # Several processes write the lake; a cached directory listing would hide their work.
        options = (
            {}
            if "://" not in self.uri or self.uri.startswith("file://")
            else {"use_listings_cache": False}
        )
        fs, root = url_to_fs(self.uri, **options)
        object.__setattr__(self, "_fs", fs)
        object.__setattr__(self, "_root", root.rstrip("/"))

    # Pickled into Dask tasks: ship the URI, rebuild the filesystem on the worker.
    def __reduce__(self) -> tuple[Any, ...]:
        return (Lake, (self.uri,))

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._fs

    @property
    def is_local(self) -> bool:
        return isinstance(self._fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        """A path inside the lake as the filesystem sees it (no protocol)."""
        return "/".join([self._root, *parts])

    def url(self, *parts: str) -> str:
        """A full URI (with protocol) inside the lake, for users and for Dask readers."""
        return self._fs.unstrip_protocol(self.path(*parts))

    def url_of(self, path: str) -> str:
        """The full URI of a path returned by :meth:`path` or a layout helper."""
        return self._fs.unstrip_protocol(path)

    # Layout --------------------------------------------------------------------------
    def dataset(self, name: str, *parts: str) -> str:
        return self.path("datasets", name, *parts)

    def partition(self, name: str, partition_id: str) -> str:
        return self.dataset(name, "partitions", f"{partition_id}.parquet")

    def version(self, name: str, version: str) -> str:
        return self.dataset(name, "versions", f"{version}.json")

    def quarantine(self, name: str, record_id: str) -> str:
        return self.dataset(name, "quarantine", f"{record_id}.json")

    def validation(self, name: str, version: str) -> str:
        return self.dataset(name, "validations", f"{version}.json")

    def model(self, name: str, *parts: str) -> str:
        return self.path("models", name, *parts)

    def results(self, *parts: str) -> str:
        """Persisted Prefect task results (the stages' cache), see ``tasks/caching.py``."""
        return self.path("runs", "results", *parts)

    # I/O -----------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(path))

    def read_bytes(self, path: str) -> bytes:
        return bytes(self._fs.cat_file(path))

    def read_json(self, path: str) -> Any:
        return json.loads(self.read_bytes(path))

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write so that readers see the old object or the whole new one, never a part.

        An S3 PUT is already all-or-nothing; on a local disk we write a temporary file in
        the same directory and rename it over the target.
        """
        if self.is_local:
            tmp = _written_beside(path, data)
            try:
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            self._fs.pipe_file(path, data)

    def create(self, path: str, data: bytes) -> bool:
        """Write ``path`` only if it does not exist (whole, as :meth:`write_bytes`); whether
        this call created it. Of several writers racing, exactly one gets True.

        On a local disk a hard link of a finished temporary file, which fails if the name
        exists; on S3 a PUT with ``If-None-Match: *``.
        """
        if not self.is_local:
            try:
                self._fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
            return True
        tmp = _written_beside(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return True

    def temporary(self, path: str) -> str:
        """A temporary path beside ``path``: readers and listings ignore it until
        :meth:`commit` moves it into place (a killed writer's is swept, see below)."""
        directory, name = path.rsplit("/", 1)
        return f"{directory}/.tmp-{uuid.uuid4().hex}-{name}"

    def open_temporary(self, path: str) -> Any:
        """A binary file to write at the temporary ``path`` (from :meth:`temporary`)."""
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return self._fs.open(path, "wb")

    def commit(self, temporary: str, path: str, *, replace: bool = True) -> bool:
        """Move a finished temporary file to ``path``; whether it was moved.

        Without ``replace``, an existing ``path`` (the same content written before, as
        content-addressed files are) is kept and the temporary deleted. A local move is an
        atomic rename; on S3 a server-side copy, after which readers see the whole object.
        """
        if not replace and self.exists(path):
            self.remove(temporary)
            return False
        if self.is_local:
            os.replace(temporary, path)
        else:
            self._fs.mv(temporary, path)
        return True

    def write_json(self, path: str, obj: Any) -> None:
        if isinstance(obj, BaseModel):
            data = obj.model_dump_json(indent=2).encode()
        else:
            data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        self.write_bytes(path, data)

    def list_files(self, path: str, suffix: str = "") -> list[str]:
        """Files directly under ``path`` ending in ``suffix``; empty when the folder is absent."""
        try:
            entries = self._fs.ls(path, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        names = [e for e in entries if e.endswith(suffix)]
        # Temporary files of an in-flight atomic write are not part of the lake.
        return sorted(n for n in names if not os.path.basename(n).startswith(".tmp-"))

    def sweep_temporaries(self, *, older_than_s: float = TEMPORARY_GRACE_S) -> list[str]:
        """Delete temporary files that a killed writer left behind; return their paths.

        A process killed between writing its temporary file and renaming it (SIGKILL,
        OOM, a lost Dask worker) cannot clean up. Readers already ignore such files; this
        reclaims them. Only files older than ``older_than_s`` go, so writes in flight in
        another run are left alone. S3 writes are single PUTs and leave nothing.
        """
        if not self.is_local or not os.path.isdir(self._root):
            return []
        cutoff = time.time() - older_than_s
        swept = []
        for directory, _dirs, files in os.walk(self._root):
            for name in files:
                path = os.path.join(directory, name)
                if name.startswith(".tmp-") and _mtime(path) <= cutoff:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                        swept.append(path)
        return sorted(swept)

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Delete a file (or a folder with ``recursive``); absent is fine."""
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm(path, recursive=recursive)


def _written_beside(path: str, data: bytes) -> str:
    """``data`` in a synced temporary file in ``path``'s folder (made if needed), ready to be
    renamed or linked into place; its path."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp
