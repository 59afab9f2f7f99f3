"""The realized metric of scored rows that carry the target: performance monitoring.

Every split adds up a few sums over its labeled rows (on its worker); the run adds the
splits' sums and turns them into the model's metrics. ROC AUC comes from histograms of the
positive-class probability by label (``AUC_BINS`` bins: within about 1e-3 of the exact
value), so no labels or predictions ever leave the workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

AUC_BINS = 2000
# Probabilities are clipped as scikit-learn's log loss does.
EPS = 1e-15
Sums = dict[str, list[float]]


def labeled_sums(task: str, y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> Sums:
    """The sums of one batch of labeled rows (``y_true``: class index or value)."""
    n = float(len(y_true))
    if task == "binary":
        p = np.clip(np.asarray(y_pred, dtype="float64"), EPS, 1 - EPS)
        y = np.asarray(y_true).astype(int)
        bins = np.minimum((p * AUC_BINS).astype(int), AUC_BINS - 1)
        predicted = p >= 0.5
        return {
            "n": [n],
            "logloss": [float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())],
            "tp": [float((predicted & (y == 1)).sum())],
            "fp": [float((predicted & (y == 0)).sum())],
            "fn": [float((~predicted & (y == 1)).sum())],
            "correct": [float((predicted == (y == 1)).sum())],
            "positives": np.bincount(bins[y == 1], minlength=AUC_BINS).astype(float).tolist(),
            "negatives": np.bincount(bins[y == 0], minlength=AUC_BINS).astype(float).tolist(),
        }
    if task == "multiclass":
        probabilities = np.clip(np.asarray(y_pred, dtype="float64"), EPS, 1.0)
        y = np.asarray(y_true).astype(int)
        predicted = probabilities.argmax(axis=1)
        picked = probabilities[np.arange(len(y)), y] / probabilities.sum(axis=1)
        return {
            "n": [n],
            "logloss": [float(-np.log(picked).sum())],
            "correct": [float((predicted == y).sum())],
            "tp": np.bincount(y[predicted == y], minlength=classes).astype(float).tolist(),
            "predicted": np.bincount(predicted, minlength=classes).astype(float).tolist(),
            "actual": np.bincount(y, minlength=classes).astype(float).tolist(),
        }
    y_value = np.asarray(y_true, dtype="float64")
    error = np.asarray(y_pred, dtype="float64").reshape(-1) - y_value
    return {
        "n": [n],
        "squared": [float((error**2).sum())],
        "absolute": [float(np.abs(error).sum())],
        "y": [float(y_value.sum())],
        "y2": [float((y_value**2).sum())],
    }


def add_sums(parts: Sequence[Mapping[str, list[float]]]) -> Sums:
    """The sums of several batches (those without labeled rows are empty)."""
    total: Sums = {}
    for part in parts:
        for name, values in part.items():
            if name in total:
                total[name] = [a + b for a, b in zip(total[name], values, strict=True)]
            else:
                total[name] = list(values)
    return total


def _auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    # Pairs where the positive scores higher, ties (same bin) counted half.
    above = np.cumsum(positives[::-1])[::-1] - positives
    pairs = float(positives.sum() * negatives.sum())
    return float((negatives * (above + 0.5 * positives)).sum() / pairs) if pairs else float("nan")


def realized_metrics(task: str, sums: Mapping[str, list[float]]) -> dict[str, float]:
    """The task's test metrics (``tasks/train/metrics.py``) from the added sums; empty when
    no scored row carried the target."""
    n = sums.get("n", [0.0])[0]
    if not n:
        return {}
    if task == "binary":
        tp, fp, fn = sums["tp"][0], sums["fp"][0], sums["fn"][0]
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        return {
            "roc_auc": _auc(np.asarray(sums["positives"]), np.asarray(sums["negatives"])),
            "logloss": sums["logloss"][0] / n,
            "accuracy": sums["correct"][0] / n,
            "f1": f1,
        }
    if task == "multiclass":
        hits, predicted, actual = (np.asarray(sums[k]) for k in ("tp", "predicted", "actual"))
        denominator = predicted + actual
        per_class = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)
        return {
            "logloss": sums["logloss"][0] / n,
            "accuracy": sums["correct"][0] / n,
            "f1_macro": float(per_class.mean()),
        }
    total = sums["y2"][0] - sums["y"][0] ** 2 / n
    return {
        "rmse": float(np.sqrt(sums["squared"][0] / n)),
        "mae": sums["absolute"][0] / n,
        "r2": 1.0 - sums["squared"][0] / total if total > 0 else float("nan"),
    }
