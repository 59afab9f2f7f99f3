"""Retry policy shared by the tasks: retry what can heal (I/O, infrastructure), never bad data."""

from __future__ import annotations

from typing import Any

from tasks.errors import MlopsError


def retry_unless_data_error(task: object, task_run: object, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry I/O and infrastructure failures, never bad data.

    A bad file or spec fails the same way every time; retrying only delays the message.
    """
    error = state.result(raise_on_failure=False)
    return not isinstance(error, MlopsError)


# Keyword arguments for ``@task`` on tasks that read or write the lake, the landing zone or
# the cluster.
IO_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [2, 10],
    "retry_condition_fn": retry_unless_data_error,
}
