"""Training and prediction on the stage's Dask cluster with xgboost.dask.

Partitions are read once on the workers, prepared there and kept in worker memory; only
labels and predictions of the test rows are gathered to score a model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client

from tasks.errors import TrainingError
from tasks.records import DataProfile, Evaluation, FeatureLayout
from tasks.storage import open_file
from tasks.train.checkpoint import (
    Checkpoints,
    History,
    best_round,
    checkpoint_callback,
    merge_history,
    stopped_early,
)
from tasks.train.evaluation import model_curves, shap_importance, shap_result, shap_sample
from tasks.train.features import LABEL_COLUMN, SPLIT_COLUMN, SPLITS, prepare_frame
from tasks.train.metrics import evaluate
from tasks.train.predictions import Kept
from tasks.train.profile import training_profile
from tasks.train.progress import progress_callback

# XGBoost and dask.dataframe take seconds to import: the functions that use them import
# them, so a run that trains nothing never loads them.
if TYPE_CHECKING:
    import dask.dataframe as dd
    import xgboost


Skipped = tuple[tuple[int, int], ...]


def read_rows(uri: str, *, columns: list[str] | None, skipped: Skipped = ()) -> pd.DataFrame:
    """One partition's rows as pandas, without the ``skipped`` row ranges (rows of
    rejected landing files)."""
    with open_file(uri, "rb") as fh:
        table = pq.read_table(fh, columns=columns)
    if skipped:
        wanted = np.ones(table.num_rows, dtype=bool)
        for start, stop in skipped:
            wanted[start:stop] = False
        table = table.filter(pa.array(wanted))
    return table.to_pandas()


def read_prepared(
    part: tuple[str, Skipped],
    *,
    read_columns: list[str] | None,
    layout: FeatureLayout,
    keep: tuple[int, ...] | None,
) -> pd.DataFrame:
    """One partition read and prepared for training, on the worker that holds it."""
    uri, skipped = part
    return prepare_frame(read_rows(uri, columns=read_columns, skipped=skipped), layout, keep)


def load_prepared(
    client: Client,
    uris: list[str],
    layout: FeatureLayout,
    keep: tuple[int, ...] | None = None,
    excluded: Mapping[str, Sequence[Sequence[int]]] | None = None,
) -> dd.DataFrame:
    """Read the partitions once on the cluster (without the ``excluded`` rows of rejected
    files), prepare them (the rows of the ``keep`` split codes only, if given), and keep
    them in worker memory: one Dask partition per lake partition."""
    # Imported on first use, like XGBoost: a run that trains nothing never loads them.
    import dask.dataframe as dd

    # A keyless split hashes whole rows, so it needs every column.
    columns = (
        [*dict.fromkeys([*layout.features, layout.target, layout.key])] if layout.key else None
    )
    skipped = excluded or {}
    parts = [(u, tuple((int(a), int(b)) for a, b in skipped.get(u, ()))) for u in uris]
    with open_file(uris[0], "rb") as fh:
        empty = pq.read_schema(fh).empty_table()
    raw_meta = empty.select(columns).to_pandas() if columns else empty.to_pandas()
    prepared = dd.from_map(
        read_prepared,
        parts,
        # Not ``columns``: from_map would take it as its own column projection.
        read_columns=columns,
        layout=layout,
        keep=keep,
        meta=prepare_frame(raw_meta, layout),
        enforce_metadata=False,
    )
    return client.persist(prepared)


def split_sizes(client: Client, prepared: dd.DataFrame) -> dict[str, int]:
    # Three sums in one pass (a value_counts would shuffle).
    sums = client.gather(
        client.compute([(prepared[SPLIT_COLUMN] == code).sum() for code in SPLITS.values()])
    )
    return {name: int(n) for name, n in zip(SPLITS, sums, strict=True)}


def score(
    client: Client,
    booster: xgboost.Booster,
    prepared: dd.DataFrame,
    layout: FeatureLayout,
    split: str,
) -> dict[str, float]:
    """Metrics of ``booster`` on one split of a prepared frame."""
    return score_each(client, [booster], prepared, layout, split)[0]


def score_each(
    client: Client,
    boosters: list[xgboost.Booster],
    prepared: dd.DataFrame,
    layout: FeatureLayout,
    split: str,
) -> list[dict[str, float]]:
    """Metrics of each booster on one split of a prepared frame (its labels gathered once)."""
    _, scored, _ = evaluate_each(client, boosters, prepared, layout, split)
    return [metrics for metrics, _ in scored]


def evaluate_each(
    client: Client,
    boosters: list[xgboost.Booster],
    prepared: dd.DataFrame,
    layout: FeatureLayout,
    split: str,
    known: Mapping[int, Mapping[int, Kept]] | None = None,
) -> tuple[np.ndarray, list[tuple[dict[str, float], np.ndarray]], list[list[Kept]]]:
    """The labels of one split of a prepared frame, each booster's metrics and predictions
    on it, and its labels and predictions per partition of the frame.

    ``known[i][n]`` are booster ``i``'s predictions of partition ``n``'s rows, made before:
    used instead of predicting again when they came with the labels of these rows.
    """
    rows = client.persist(prepared[prepared[SPLIT_COLUMN] == SPLITS[split]])
    labels = [np.asarray(y) for y in client.gather(client.compute(rows[LABEL_COLUMN].to_delayed()))]
    y_true = np.concatenate(labels)
    scored, parts = [], []
    for i, booster in enumerate(boosters):
        made = {
            n: np.asarray(k.predictions)
            for n, k in (known or {}).get(i, {}).items()
            if n < len(labels) and len(labels[n]) and np.array_equal(k.labels, labels[n])
        }
        missing = [n for n, y in enumerate(labels) if len(y) and n not in made]
        if missing:
            from xgboost import dask as dxgb

            pieces = dxgb.inplace_predict(client, booster, rows[layout.features]).to_delayed()
            computed = client.gather(client.compute([pieces[n] for n in missing]))
            made.update({n: np.asarray(p) for n, p in zip(missing, computed, strict=True)})
        # A partition without rows of the split has nothing to predict (one has: the split
        # is never empty here), shaped as the others' predictions.
        some = next(iter(made.values()))
        none = np.zeros((0, *some.shape[1:]), some.dtype)
        parts.append([Kept(y, made.get(n, none)) for n, y in enumerate(labels)])
        predictions = np.concatenate([k.predictions for k in parts[-1]])
        scored.append((evaluate(layout.task, y_true, predictions), predictions))
    return y_true, scored, parts


@dataclass(frozen=True)
class TrainedModel:
    booster: xgboost.Booster
    history: dict[str, dict[str, list[float]]]
    best_iteration: int
    best_score: float | None
    metrics: dict[str, float]
    rows: dict[str, int]
    workers: int
    timings: dict[str, float]
    resumed_from_round: int | None = None
    base_metrics: dict[str, float] = field(default_factory=dict)
    profile: DataProfile | None = None
    evaluation: Evaluation | None = None
    # Each partition's test rows as it saw them, by partition URI (kept with the model).
    test_predictions: dict[str, Kept] = field(default_factory=dict)


def train_distributed(
    client: Client,
    *,
    uris: list[str],
    layout: FeatureLayout,
    params: dict[str, Any],
    num_boost_round: int,
    early_stopping_rounds: int | None,
    checkpoints: Checkpoints | None = None,
    checkpoint_every: int = 10,
    report_progress: bool = False,
    base: xgboost.Booster | None = None,
    train_uris: list[str] | None = None,
    excluded: Mapping[str, Sequence[Sequence[int]]] | None = None,
    profile_bins: int = 10,
    version: str = "",
    compare: tuple[str, xgboost.Booster] | None = None,
    compare_predictions: Mapping[str, Kept] | None = None,
) -> TrainedModel:
    """Train with xgboost.dask on the client's cluster and evaluate on the test split.

    With ``checkpoints``, the booster is saved every ``checkpoint_every`` rounds, and a
    training that finds a checkpoint continues from it (``xgb_model=``) instead of round 0.
    With ``report_progress``, rank 0 reports rounds on ``PROGRESS_TOPIC``.
    A warm start adds ``num_boost_round`` rounds to ``base``, fitted on the train rows of
    ``train_uris`` only; early stopping and the test metrics still use the validation and
    test rows of all ``uris``. ``excluded`` rows (of rejected landing files, by partition
    URI) are never read into training.

    The model's training profile (``profile.py``) is computed on the cluster from the rows
    it was fitted on (a warm start: from every partition's validation rows, a hash sample of
    the same data, as the new train rows alone would profile the new files only). Its
    evaluation curves are drawn from the test rows, beside those of ``compare`` (the
    champion's version and booster, when it encodes rows the same way), whose predictions
    of a partition's test rows are taken from ``compare_predictions`` (by partition URI)
    where it has them, not made again.
    """
    from xgboost import dask as dxgb

    timings: dict[str, float] = {}
    started = time.perf_counter()
    warm = train_uris is not None and sorted(train_uris) != sorted(uris)
    # A warm start fits on the new partitions' train rows and judges on everyone's
    # validation and test rows: each read keeps only the rows it is used for.
    prepared = load_prepared(client, uris, layout, keep=(1, 2) if warm else None, excluded=excluded)
    rows = split_sizes(client, prepared)
    fitted = prepared
    if warm and train_uris is not None:
        fitted = load_prepared(client, train_uris, layout, keep=(0,), excluded=excluded)
        rows["train"] = split_sizes(client, fitted)["train"]
    timings["load_seconds"] = time.perf_counter() - started
    empty = [name for name, n in rows.items() if n == 0]
    if empty:
        raise TrainingError(
            f"the {', '.join(empty)} split(s) would be empty ({rows}); "
            "the accepted data is too small"
        )

    def part(frame: dd.DataFrame, split: str) -> tuple[dd.DataFrame, dd.Series]:
        rows_of = frame[frame[SPLIT_COLUMN] == SPLITS[split]]
        return rows_of[layout.features], rows_of[LABEL_COLUMN]

    x_train, y_train = part(fitted, "train")
    x_valid, y_valid = part(prepared, "validation")
    started = time.perf_counter()
    dtrain = dxgb.DaskQuantileDMatrix(client, x_train, y_train, enable_categorical=True)
    dvalid = dxgb.DaskQuantileDMatrix(client, x_valid, y_valid, ref=dtrain, enable_categorical=True)
    timings["dmatrix_seconds"] = time.perf_counter() - started
    # Rounds are counted after the base's trees: a checkpoint holds base + rounds done.
    offset = base.num_boosted_rounds() if base is not None else 0
    resumed = checkpoints.latest() if checkpoints else None
    booster: xgboost.Booster | None = resumed[0] if resumed else base
    history: History = resumed[1].history if resumed else {}
    remaining = num_boost_round - (booster.num_boosted_rounds() - offset if booster else 0)
    started = time.perf_counter()
    if remaining > 0 and not stopped_early(history, early_stopping_rounds):
        callbacks = (
            [checkpoint_callback(checkpoints, every=checkpoint_every, history_before=history)]
            if checkpoints
            else []
        )
        if report_progress:
            callbacks.append(progress_callback(total=num_boost_round, offset=offset))
        output = dxgb.train(
            client,
            params,
            dtrain,
            num_boost_round=remaining,
            evals=[(dtrain, "train"), (dvalid, "validation")],
            early_stopping_rounds=early_stopping_rounds,
            xgb_model=booster,
            callbacks=callbacks,
            verbose_eval=False,
        )
        booster = output["booster"]
        history = merge_history(history, output["history"])
    timings["train_seconds"] = time.perf_counter() - started
    assert booster is not None
    rounds = booster.num_boosted_rounds()
    # The best round over the whole history (before and after a resume), as early stopping
    # judges it; without early stopping, every round is kept.
    best = best_round(history) if early_stopping_rounds else None
    best_iteration, best_score = (offset + best[0], best[1]) if best else (rounds - 1, None)
    # Keep exactly the best trees: every later user of the model then predicts the same way.
    if best_iteration + 1 < rounds:
        booster = booster[: best_iteration + 1]
    # TreeSHAP on a sample of the test rows runs on the workers while the model is
    # evaluated and profiled (the flow process draws curves meanwhile): collected last.
    started = time.perf_counter()
    sample = shap_sample(client, prepared, layout, test_rows=rows["test"])
    pending_shap = shap_importance(client, booster, sample, layout)
    shap_seconds = time.perf_counter() - started
    started = time.perf_counter()
    # The champion (to draw beside the candidate) is the base of a warm start: scored once.
    others = [b for b in (base, compare[1] if compare else None) if b is not None]
    others = [b for i, b in enumerate(others) if all(b is not o for o in others[:i])]
    boosters = [booster, *others]
    # The champion's predictions made when it was trained, for the partitions they hold.
    stored = compare_predictions or {}
    known = {
        i: {n: stored[u] for n, u in enumerate(uris) if u in stored}
        for i, b in enumerate(boosters)
        if compare is not None and b is compare[1]
    }
    y_test, scored, parts = evaluate_each(client, boosters, prepared, layout, "test", known)
    metrics, test_predictions = scored[0]
    base_metrics = scored[1][0] if base is not None else {}
    evaluation = Evaluation(
        task=layout.task,
        classes=layout.classes,
        test_rows=len(y_test),
        models=[
            model_curves(
                layout, y_test, test_predictions, version=version, role="candidate", metrics=metrics
            )
        ],
    )
    if compare is not None:
        champion_metrics, champion_predictions = scored[1 + others.index(compare[1])]
        evaluation.models.append(
            model_curves(
                layout,
                y_test,
                champion_predictions,
                version=compare[0],
                role="champion",
                metrics=champion_metrics,
            )
        )
    timings["evaluate_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    profile = training_profile(
        client,
        prepared,
        layout,
        split_code=SPLITS["validation"] if warm else SPLITS["train"],
        rows_of="validation" if warm else "train",
        test_predictions=test_predictions,
        bins=profile_bins,
    )
    timings["profile_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    evaluation = evaluation.model_copy(
        update={"shap": shap_result(pending_shap), "shap_rows": len(sample)}
    )
    # What SHAP added: drawing its sample, and waiting for it after the evaluation and the
    # profile (which it ran beside), so that the phases still add up to the training's time.
    timings["shap_seconds"] = shap_seconds + time.perf_counter() - started
    return TrainedModel(
        booster=booster,
        history=history,
        best_iteration=best_iteration,
        best_score=best_score,
        resumed_from_round=resumed[1].rounds if resumed else None,
        metrics=metrics,
        rows=rows,
        workers=len(client.scheduler_info()["workers"]),
        timings=timings,
        base_metrics=base_metrics,
        profile=profile,
        evaluation=evaluation,
        test_predictions=dict(zip(uris, parts[0], strict=True)),
    )
