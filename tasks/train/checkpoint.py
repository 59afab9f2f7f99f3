"""Training checkpoints in the lake, so a retried or re-run training resumes where it stopped.

Layout under ``<lake>/runs/checkpoints/<model>/<model version>/``::

    round-000040.ubj   the booster after 40 rounds (UBJSON)
    state.json         written last: which round file is current, and the eval history so far

The model version is the hash of everything training depends on, so a checkpoint can only
ever be resumed by a training of the same inputs. XGBoost's workers train in lockstep and
hold the same trees, so rank 0 alone writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tasks.lake import Lake

# XGBoost takes seconds to import: the functions that use it import it, so a run that
# trains nothing never loads it.
if TYPE_CHECKING:
    import xgboost

History = dict[str, dict[str, list[float]]]
# Metric name prefixes XGBoost's early stopping maximizes (auc, aucpr, pre@n, map@n, ndcg@n).
MAXIMIZED_METRICS = ("auc", "pre", "map", "ndcg")


class CheckpointState(BaseModel):
    rounds: int
    model_file: str
    history: History


def merge_history(before: History, after: History) -> History:
    """Eval history of a resumed training: the checkpoint's rounds, then the new ones."""
    merged: History = {k: {m: list(v) for m, v in d.items()} for k, d in before.items()}
    for data, metrics in after.items():
        for metric, values in metrics.items():
            merged.setdefault(data, {}).setdefault(metric, []).extend(float(v) for v in values)
    return merged


def best_round(history: History, *, eval_name: str = "validation") -> tuple[int, float] | None:
    """(round, score) of the best validation score, judged as XGBoost's early stopping does
    (its last metric; maximized for auc/map/ndcg/pre, else minimized). None without history."""
    metrics = history.get(eval_name)
    if not metrics:
        return None
    name, scores = list(metrics.items())[-1]
    if not scores:
        return None
    maximize = name.startswith(MAXIMIZED_METRICS)
    pick = max if maximize else min
    best = pick(range(len(scores)), key=lambda i: (scores[i], -i) if maximize else (scores[i], i))
    return best, float(scores[best])


def stopped_early(history: History, early_stopping_rounds: int | None) -> bool:
    """Whether early stopping would already have ended a training with this history."""
    found = best_round(history)
    if early_stopping_rounds is None or found is None:
        return False
    rounds = len(list(history["validation"].values())[-1])
    return rounds - 1 - found[0] >= early_stopping_rounds


@dataclass(frozen=True)
class Checkpoints:
    """The checkpoints of one model version. Holds only strings: it travels to the workers."""

    lake_uri: str
    model_name: str
    model_version: str

    @property
    def _lake(self) -> Lake:
        return Lake(self.lake_uri)

    def _path(self, *parts: str) -> str:
        return self._lake.path("runs", "checkpoints", self.model_name, self.model_version, *parts)

    def latest(self) -> tuple[xgboost.Booster, CheckpointState] | None:
        """The last complete checkpoint, or None."""
        import xgboost

        lake = self._lake
        if not lake.exists(self._path("state.json")):
            return None
        state = CheckpointState.model_validate(lake.read_json(self._path("state.json")))
        booster = xgboost.Booster()
        booster.load_model(bytearray(lake.read_bytes(self._path(state.model_file))))
        return booster, state

    def save(self, booster: xgboost.Booster, history: History) -> CheckpointState:
        """Write the booster, then the state that points to it (the commit), then drop the
        previous round's file. A crash at any point leaves the previous checkpoint usable."""
        lake = self._lake
        previous = (
            CheckpointState.model_validate(lake.read_json(self._path("state.json")))
            if lake.exists(self._path("state.json"))
            else None
        )
        rounds = booster.num_boosted_rounds()
        state = CheckpointState(
            rounds=rounds, model_file=f"round-{rounds:06d}.ubj", history=history
        )
        lake.write_bytes(self._path(state.model_file), bytes(booster.save_raw(raw_format="ubj")))
        lake.write_json(self._path("state.json"), state)
        if previous is not None and previous.model_file != state.model_file:
            lake.remove(self._path(previous.model_file))
        return state

    def clear(self) -> None:
        """Forget them (the model they led to is registered)."""
        self._lake.remove(self._path(), recursive=True)


def checkpoint_callback(checkpoints: Checkpoints, *, every: int, history_before: History) -> Any:
    """An XGBoost callback that checkpoints every ``every`` rounds from rank 0."""
    import xgboost
    from xgboost import collective

    class Checkpoint(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            # epoch counts from the resumed model's rounds, so this is the absolute round.
            if (epoch + 1) % every == 0 and collective.get_rank() == 0:
                history = merge_history(history_before, _plain(evals_log))
                checkpoints.save(model, history)
            return False

    return Checkpoint()


def _plain(evals_log: Any) -> History:
    return {k: {m: [float(v) for v in vs] for m, vs in d.items()} for k, d in evals_log.items()}
