"""How every part of the pipeline opens files: one place for storage options.

S3 fails transiently (503 SlowDown when throttling, 500s, dropped connections). Each S3
request is retried by the client with adaptive backoff before a task ever sees an error;
task retries (``tasks/retries.py``) then cover what outlasts those.
"""

from __future__ import annotations

from typing import Any

import fsspec

# botocore's "adaptive" mode: exponential backoff with jitter plus client-side rate limiting
# when S3 throttles; 10 attempts outlast a burst of failures without hiding an outage.
S3_RETRIES = {"max_attempts": 10, "mode": "adaptive"}


def storage_options(uri: str) -> dict[str, Any]:
    """fsspec options for ``uri`` (empty for local paths)."""
    if uri.startswith(("s3://", "s3a://")):
        return {"config_kwargs": {"retries": dict(S3_RETRIES)}}
    return {}


def url_to_fs(uri: str, **options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """``fsspec.core.url_to_fs`` with this package's storage options."""
    fs, path = fsspec.core.url_to_fs(uri, **{**storage_options(uri), **options})
    return fs, path


def open_file(uri: str, mode: str = "rb", **kwargs: Any) -> Any:
    """``fsspec.open`` with this package's storage options."""
    return fsspec.open(uri, mode, **storage_options(uri), **kwargs)
