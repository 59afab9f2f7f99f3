"""Rows to predictions on the worker that read them: XGBoost's ``inplace_predict`` (no
DMatrix), and per-row explanations from its own TreeSHAP (``pred_contribs``)."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.records import FeatureLayout
from tasks.storage import open_file

# XGBoost takes seconds to import: the functions that use it import it.
if TYPE_CHECKING:
    import xgboost

MODEL_VERSION_COLUMN = "model_version"
PREDICTION_COLUMN = "prediction"

_lock = threading.Lock()
# One booster per model file and process: every split a worker scores shares it.
_boosters: dict[str, xgboost.Booster] = {}


def worker_threads() -> int:
    """Threads XGBoost may use here: the Dask worker's own, else every core."""
    from distributed import get_worker

    try:
        return int(get_worker().state.nthreads)
    except ValueError:  # not in a worker (the flow process, an in-process worker's thread)
        return os.cpu_count() or 1


def load_booster(uri: str) -> xgboost.Booster:
    """The model at ``uri``, loaded once per process."""
    import xgboost

    with _lock:
        if uri not in _boosters:
            with open_file(uri, "rb") as fh:
                raw = fh.read()
            booster = xgboost.Booster()
            booster.load_model(bytearray(raw))
            _boosters[uri] = booster
        booster = _boosters[uri]
    return booster


def predict(booster: xgboost.Booster, inputs: pd.DataFrame) -> np.ndarray:
    """The model's raw predictions (probabilities or values) for encoded model inputs."""
    # A fresh copy per call shares the trees and sets its own threads: concurrent tasks in
    # one worker do not race on one booster's parameters.
    local = booster.copy()
    local.set_param({"nthread": worker_threads()})
    return np.asarray(local.inplace_predict(inputs, validate_features=True))


def prediction_columns(layout: FeatureLayout, predictions: np.ndarray) -> dict[str, pa.Array]:
    """What a prediction file holds per task: the positive class's probability and the class
    (binary), each class's probability and the class (multiclass), or the value."""
    if layout.task == "regression":
        return {PREDICTION_COLUMN: pa.array(predictions.reshape(-1).astype("float64"))}
    classes = np.asarray(layout.classes or [], dtype=object)
    if layout.task == "binary":
        probability = predictions.reshape(-1).astype("float64")
        return {
            f"probability_{classes[1]}": pa.array(probability),
            PREDICTION_COLUMN: pa.array(classes[(probability >= 0.5).astype(int)], pa.string()),
        }
    columns = {
        f"probability_{name}": pa.array(predictions[:, i].astype("float64"))
        for i, name in enumerate(classes)
    }
    columns[PREDICTION_COLUMN] = pa.array(classes[predictions.argmax(axis=1)], pa.string())
    return columns


def top_contributions(
    booster: xgboost.Booster,
    inputs: pd.DataFrame,
    layout: FeatureLayout,
    predictions: np.ndarray,
    k: int,
) -> dict[str, pa.Array]:
    """The ``k`` features that moved each row's prediction most (TreeSHAP contributions, in
    margin units; for classes, those of the predicted class): name and contribution."""
    import xgboost

    local = booster.copy()
    local.set_param({"nthread": worker_threads()})
    matrix = xgboost.DMatrix(inputs, enable_categorical=True)
    contributions = np.asarray(local.predict(matrix, pred_contribs=True))
    if contributions.ndim == 3:  # multiclass: rows x classes x (features + bias)
        contributions = contributions[np.arange(len(inputs)), predictions.argmax(axis=1)]
    contributions = contributions[:, :-1]  # the last column is the bias
    k = min(k, contributions.shape[1])
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
    names = np.asarray(layout.features, dtype=object)
    columns: dict[str, pa.Array] = {}
    for rank in range(k):
        picked = order[:, rank]
        columns[f"explain_{rank + 1}_feature"] = pa.array(names[picked], pa.string())
        columns[f"explain_{rank + 1}_contribution"] = pa.array(
            contributions[np.arange(len(inputs)), picked].astype("float64")
        )
    return columns
