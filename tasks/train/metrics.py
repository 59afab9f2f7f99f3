"""Test metrics for each task kind (scikit-learn), on gathered labels and predictions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tasks.errors import TrainingError

if TYPE_CHECKING:
    import xgboost


def evaluate(task_kind: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Test metrics fitting the task (scikit-learn)."""
    # Imported when scoring: a run that trains nothing never pays for scikit-learn.
    from sklearn import metrics

    if task_kind == "binary":
        if len(np.unique(y_true)) < 2:
            raise TrainingError(
                "the test split holds a single class; need more (or more varied) data"
            )
        return {
            "roc_auc": float(metrics.roc_auc_score(y_true, y_pred)),
            "logloss": float(metrics.log_loss(y_true, y_pred, labels=[0, 1])),
            "accuracy": float(metrics.accuracy_score(y_true, y_pred >= 0.5)),
            "f1": float(metrics.f1_score(y_true, y_pred >= 0.5)),
        }
    if task_kind == "multiclass":
        labels = list(range(y_pred.shape[1]))
        predicted = y_pred.argmax(axis=1)
        return {
            "logloss": float(metrics.log_loss(y_true, y_pred, labels=labels)),
            "accuracy": float(metrics.accuracy_score(y_true, predicted)),
            "f1_macro": float(metrics.f1_score(y_true, predicted, average="macro", labels=labels)),
        }
    return {
        "rmse": float(np.sqrt(metrics.mean_squared_error(y_true, y_pred))),
        "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
        "r2": float(metrics.r2_score(y_true, y_pred)),
    }


def gain_importance(booster: xgboost.Booster) -> dict[str, float]:
    """Each feature's importance as XGBoost's average gain of its splits."""
    scores = booster.get_score(importance_type="gain")
    # Multi-output models report a list per feature; their mean ranks the feature.
    return {k: float(v) if isinstance(v, float) else sum(v) / len(v) for k, v in scores.items()}
