"""Flow run names that say which dataset a run is for: ``customers-brave-otter``.

The UI lists runs by name and the alert automations quote it, so a page about a failed run
names its dataset even when the run failed before it read anything.
"""

from __future__ import annotations

import posixpath

from prefect.runtime import flow_run
from prefect.utilities.names import generate_slug

from tasks.spec import load_spec


def dataset_of(spec: str) -> str:
    """The spec's dataset name, or the spec file's stem when it cannot be read (the run
    itself then fails on it, with the reason)."""
    try:
        return load_spec(spec).name
    except Exception:  # a name must never fail a run: the run reports the spec's problem
        stem = posixpath.basename(spec.rstrip("/")).split(".")[0]
        return stem or "unknown"


def dataset_run_name() -> str:
    """``<dataset>-<two words>``, from the run's ``spec`` parameter (a flow_run_name)."""
    spec = flow_run.parameters.get("spec")
    name = dataset_of(spec) if isinstance(spec, str) and spec else "unknown"
    return f"{name}-{generate_slug(2)}"
