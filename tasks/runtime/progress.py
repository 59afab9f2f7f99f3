"""What a running stage tells about its progress, and the run's structured logger.

:class:`StageProgress` is a Prefect progress artifact (per partition, per N training rounds)
that also tells in-process listeners, such as ``mlops run``'s progress display.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.utilities.context import get_task_and_flow_run_ids

from tasks.runtime.publish import artifact_key


def run_logger(stage: str, **ids: str | None) -> Any:
    """The run's Prefect logger, with ``stage`` and the ids given (dataset, dataset_version,
    partition, model, model_version) on every record it writes.

    The ids travel as record attributes, so JSON logging
    (``PREFECT_LOGGING_HANDLERS_CONSOLE_FORMATTER=json``) or any handler can index them;
    messages name them too, for the Prefect UI, which shows the message only.
    """

    extra: dict[str, Any] = {k: v for k, v in ids.items() if v is not None}
    return get_run_logger(None, stage=stage, **extra)


@dataclass(frozen=True)
class ProgressUpdate:
    stage: str
    done: int
    total: int
    unit: str
    detail: str = ""

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0


ProgressListener = Callable[[ProgressUpdate], None]

_listeners: list[ProgressListener] = []

_listeners_lock = threading.Lock()


@contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[None]:
    """Call ``listener`` with every progress update made in this process while inside."""
    with _listeners_lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(listener)


class StageProgress:
    """A progress artifact for one stage of one run, updated as work completes.

    Thread-safe, and safe to update from an event loop (Dask's topic handlers): it talks to
    the API with Prefect's synchronous client and at most once per ``interval`` seconds,
    except for the final update. A failing API never fails the work it reports on.
    """

    def __init__(
        self, *, stage: str, dataset: str, total: int, unit: str, interval: float = 1.0
    ) -> None:

        self.stage, self.total, self.unit, self.interval = stage, total, unit, interval
        self.key = artifact_key(f"{stage}-progress", dataset)
        self._lock = threading.Lock()
        self._sent_at = 0.0
        self._artifact: Any = None
        task_run_id, flow_run_id = get_task_and_flow_run_ids()
        self._runs = {"task_run_id": task_run_id, "flow_run_id": flow_run_id}
        self._api(self._create)
        # Creating it was the first send: the interval counts from now.
        self._sent_at = time.monotonic()

    def update(self, done: int, detail: str = "") -> None:
        update = ProgressUpdate(self.stage, min(done, self.total), self.total, self.unit, detail)
        with _listeners_lock:
            listeners = list(_listeners)
        for listener in listeners:
            listener(update)
        with self._lock:
            now = time.monotonic()
            if update.done < self.total and now - self._sent_at < self.interval:
                return
            self._sent_at = now
        self._api(lambda client: self._send(client, update))

    def _create(self, client: Any) -> None:

        self._artifact = client.create_artifact(
            ArtifactCreate(
                type="progress",
                key=self.key,
                data=0.0,
                description=f"{self.stage}: 0 of {self.total} {self.unit}",
                **self._runs,
            )
        ).id

    def _send(self, client: Any, update: ProgressUpdate) -> None:

        if self._artifact is None:
            return
        client.update_artifact(
            self._artifact,
            ArtifactUpdate(
                data=update.percent,
                description=f"{self.stage}: {update.done} of {self.total} {self.unit}"
                + (f" ({update.detail})" if update.detail else ""),
            ),
        )

    def _api(self, call: Callable[[Any], None]) -> None:

        try:
            with get_client(sync_client=True) as client:
                call(client)
        except Exception as err:  # progress is a view of the work, never a reason to stop it
            logging.getLogger(__name__).warning("Progress of %s not updated: %s", self.key, err)
