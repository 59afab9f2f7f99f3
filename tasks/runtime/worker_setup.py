"""Run by each local worker forked from the forkserver before it takes tasks (a Dask
preload: ``dask_setup`` is called with the worker).

The forkserver imported Prefect (``runner.WORKER_IMPORTS``) with its own environment, at its
start; the nanny gives each worker the environment of its stage (the flow's Prefect API,
home, logging settings) only after the fork, so Prefect's settings are read again here.
"""

from __future__ import annotations

from typing import Any

from prefect.context import refresh_global_settings_context


def dask_setup(worker: Any) -> None:
    """Read Prefect's settings from the environment this worker was started with."""
    refresh_global_settings_context()
