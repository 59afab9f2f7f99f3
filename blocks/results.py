"""Prefect result storage inside the lake, so cached task results travel with the data.

Prefect's own ``LocalFileSystem`` and ``RemoteFileSystem`` blocks write a result file in
place: a crash mid-write leaves a truncated record that another run may read. This block
writes through :class:`tasks.lake.Lake`, which replaces a local file atomically and relies
on S3's all-or-nothing PUT, and opens S3 with the package's retrying storage options.
"""

from __future__ import annotations

from typing import ClassVar

import anyio.to_thread
from prefect.filesystems import WritableFileSystem
from pydantic import Field

from tasks.lake import Lake


class LakeResultStorage(WritableFileSystem):
    """Result records under ``<lake>/runs/results/`` (a local path or ``s3://``)."""

    _block_type_name: ClassVar[str] = "MLOps Lake Result Storage"
    _description: ClassVar[str] = (
        "Persisted Prefect task results under <lake>/runs/results (local path or s3://)."
    )

    lake: str = Field(..., description="Lake URI (local path or s3://bucket/prefix).")

    def _resolve_path(self, key: str) -> str:
        """Where a record lives (Prefect also calls this, with "" for the folder itself)."""
        lake = Lake(self.lake)
        root = lake.results()
        if key.startswith(root + "/"):  # already resolved (Prefect does that for unsaved blocks)
            return key
        # Keys are ours ("<task-name>/<hash>"); refuse anything that would leave the folder.
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"result key {key!r} is not a relative path")
        return lake.results(key) if key else root

    # Prefect calls ``read_path(key, _sync=True)`` from sync code and ``aread_path`` from async
    # code (prefect/_internal/compatibility/blocks.py).
    def read_path(self, path: str, _sync: bool | None = None) -> bytes:  # type: ignore[override]
        lake = Lake(self.lake)
        return lake.read_bytes(self._resolve_path(path))

    def write_path(  # type: ignore[override]
        self, path: str, content: bytes, _sync: bool | None = None
    ) -> str:
        lake = Lake(self.lake)
        target = self._resolve_path(path)
        lake.write_bytes(target, content)
        return lake.url_of(target)

    async def aread_path(self, path: str) -> bytes:
        return await anyio.to_thread.run_sync(self.read_path, path)

    async def awrite_path(self, path: str, content: bytes) -> str:
        return await anyio.to_thread.run_sync(self.write_path, path, content)
