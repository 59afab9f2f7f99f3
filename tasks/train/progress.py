"""Training progress: rank 0 reports rounds on a Dask topic; the driving client follows it
into a Prefect progress artifact."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distributed import Client, get_worker

from tasks.runtime.progress import StageProgress
from tasks.spec import DatasetSpec

# XGBoost takes seconds to import: the callback's factory imports it (training only).

# Dask topic rank 0 reports training rounds on; the training task follows it.
PROGRESS_TOPIC = "mlops-training-progress"


def progress_callback(*, total: int, updates: int = 20, offset: int = 0) -> Any:
    """An XGBoost callback that reports every ~``total/updates`` rounds from rank 0.

    ``offset``: trees the booster had before this training (a warm start's base), which
    XGBoost counts in its epochs.

    It runs inside a Dask worker task; the message goes to the scheduler's event log under
    :data:`PROGRESS_TOPIC`, where the client driving the training subscribes to it.
    """
    import xgboost
    from xgboost import collective

    every = max(1, total // updates)

    class Progress(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            done = epoch + 1 - offset
            if collective.get_rank() == 0 and (done % every == 0 or done == total):
                latest = {
                    f"{data} {metric}": float(values[-1])
                    for data, metrics in evals_log.items()
                    for metric, values in metrics.items()
                    if values
                }
                get_worker().log_event(PROGRESS_TOPIC, {"round": done, "latest": latest})
            return False

    return Progress()


@contextmanager
def follow_training(client: Client, spec: DatasetSpec, *, total: int) -> Iterator[None]:
    """A progress artifact of the training rounds, fed by rank 0's progress callback."""
    progress = StageProgress(stage="train", dataset=spec.name, total=total, unit="rounds")

    def on_round(event: tuple[float, dict[str, Any]]) -> None:
        message = event[1]
        detail = ", ".join(f"{k} {v:.4f}" for k, v in sorted(message["latest"].items()))
        progress.update(int(message["round"]), detail)

    client.subscribe_topic(PROGRESS_TOPIC, on_round)
    try:
        yield
        # Early stopping ends before the last round: the training is done all the same.
        progress.update(progress.total, "finished")
    finally:
        client.unsubscribe_topic(PROGRESS_TOPIC)
