"""Retry policy shared by the tasks: retry what can heal (I/O, infrastructure), never bad data."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from tasks.errors import MlopsError


def retry_unless_data_error(task: object, task_run: object, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry I/O and infrastructure failures, never bad data.

    A bad file or spec fails the same way every time; retrying only delays the message.
    """
    error = state.result(raise_on_failure=False)
    return not isinstance(error, MlopsError)


# Keyword arguments for ``@task`` on tasks that read or write the lake, the landing zone or
# the cluster: exponential backoff (2, 4, 8 s) with jitter, so many tasks failing together
# (a storage hiccup) do not retry in lockstep.
IO_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_unless_data_error,
}
# Training: a lost worker takes its nanny a few seconds to replace; each retry resumes from
# the last checkpoint, so retrying is cheap.
TRAINING_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [5, 20],
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_unless_data_error,
}
