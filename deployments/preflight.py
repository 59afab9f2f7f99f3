"""Checks of a command line's spec, source and lake before Prefect starts.

A misspelt path should be answered in about a second with one line, not after an ephemeral
API start, a flow run and a traceback. These are the same checks the flows make first
(they stay there for runs started any other way); the CLI makes them before it imports the
flows.
"""

from __future__ import annotations

import os

from tasks.errors import MlopsError
from tasks.ingest.landing import list_landing
from tasks.lake import Lake
from tasks.spec import load_spec
from tasks.storage import dot_segments_problem, url_to_fs
from tasks.validate.expectations import check_expectations_once

# Where a lake may be: a folder, or an object store whose writes are atomic per object.
LAKE_SCHEMES = frozenset({"file", "local", "s3", "s3a", "gs", "gcs", "abfs", "az", "memory"})


def check_spec(spec: str) -> str | None:
    try:
        load_spec(spec)
    except MlopsError as err:
        return str(err)
    return None


def check_source(source: str) -> str | None:
    try:
        list_landing(source)
    except MlopsError as err:
        return str(err)
    except (OSError, ValueError) as err:
        return f"{source}: cannot list landing location: {err}"
    return None


def check_lake(lake: str) -> str | None:
    """A lake must be a known kind of location; a local one must be a folder (or not exist
    yet, under a folder this user can write)."""
    if problem := dot_segments_problem(lake):
        return problem
    scheme = lake.partition("://")[0] if "://" in lake else "file"
    if scheme not in LAKE_SCHEMES:
        # Checked before fsspec sees it: some of its filesystems connect when made (ftp).
        return (
            f"{lake}: not a lake location (a path or s3://bucket/prefix): "
            f"{scheme}:// is not supported"
        )
    try:
        fs, root = url_to_fs(lake)
    except (ValueError, ImportError) as err:
        return f"{lake}: not a lake location (a path or s3://bucket/prefix): {err}"
    if "file" not in fs.protocol and "local" not in fs.protocol:
        return None  # remote stores answer for themselves, with retries, in the run
    path = os.path.abspath(root)
    if os.path.exists(path):
        return None if os.path.isdir(path) else f"{lake}: the lake must be a folder, not a file"
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        return f"{lake}: cannot create the lake: {parent} is not a folder this user can write"
    return None


def problems(*, spec: str, lake: str, source: str | None = None) -> list[str]:
    """Every problem with the command line's spec, source and lake (empty: go ahead)."""
    found = [check_spec(spec), check_lake(lake)]
    if source is not None:
        found.append(check_source(source))
    return [p for p in found if p]


def expectations_problem(*, spec: str, lake: str) -> str | None:
    """The spec's expectations must build under the installed Great Expectations.

    Slower than the checks above when it runs (GX takes ~3 s to import), so it comes after
    them; once a run's own check passed, the lake records it and later runs skip both (and
    GX). Nothing is written here: a run refused later (an unreachable cluster) leaves no
    lake behind. A lake that cannot be read now is left to the run, which checks again with
    retries.
    """
    try:
        check_expectations_once(load_spec(spec), Lake(lake), record=False)
    except MlopsError as err:
        return str(err)
    except OSError:
        return None
    return None
