"""The spec's expectations as Great Expectations objects, and the check that they build.

Importing GX costs seconds, so it is imported only by the functions that need it, never at
import time: a warm run with nothing new never loads it.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from typing import Any

from tasks.errors import SpecError
from tasks.lake import Lake
from tasks.spec import DatasetSpec, ExpectationSpec

# Great Expectations takes seconds to import: the functions that build GX objects import it.


def expectation(config: ExpectationSpec) -> Any:
    """The GX expectation object for one configured expectation."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    return ExpectationConfiguration(
        type=config.type, kwargs=dict(config.kwargs), meta=dict(config.meta)
    ).to_domain_obj()


def check_expectations(spec: DatasetSpec, *, source: str = "<spec>") -> None:
    """Build every expectation of the spec so a bad one fails before any data is touched."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    problems = []
    for i, config in enumerate(spec.expectations):
        try:
            expectation(config)
        except Exception as err:  # GX raises several unrelated types for a bad config
            detail = " ".join(str(err).split())
            problems.append(f"{source}: expectations.{i} ({config.type}): {detail}")
    if problems:
        raise SpecError("invalid expectation(s)\n  " + "\n  ".join(problems))


def ephemeral_context(data_docs_sites: dict[str, Any] | None = None) -> Any:
    """A GX context held in memory: no project folder, no analytics, no progress bars."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    return gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
            data_docs_sites=data_docs_sites,
        ),
    )


def gx_version() -> str:
    """The installed GX version, without importing GX (that alone takes seconds)."""

    return version("great-expectations")


def checked_record(lake: Lake, spec: DatasetSpec) -> str:
    """Where a lake records that the spec's suite builds under the installed GX."""
    name = f"{spec.expectations_hash()}-gx{gx_version()}.json"
    return lake.path("runs", "checks", "expectations", name)


def check_expectations_once(spec: DatasetSpec, lake: Lake | None, *, record: bool = True) -> None:
    """``check_expectations``, skipped when ``lake`` records this suite passed it under this
    GX: a run with nothing new then never imports GX in the flow process. The record is only
    written after a successful check (and with ``record``), so a bad spec leaves the lake
    untouched."""
    if lake is not None and lake.exists(checked_record(lake, spec)):
        return
    check_expectations(spec, source=f"dataset spec '{spec.name}'")
    if lake is not None and record:
        lake.write_json(
            checked_record(lake, spec), {"suite": spec.expectations_hash(), "gx": gx_version()}
        )
