"""A model's evaluation curves on the test rows, and its global SHAP importance.

The curves (ROC, precision-recall and calibration for binary, a confusion matrix for
classes, residuals for regression) come from the labels and predictions of the test rows
already gathered to score the model; the champion's are drawn on the same rows when it
encodes rows the same way, so the promotion decision can be seen. SHAP importance is the
mean absolute TreeSHAP contribution (XGBoost's ``pred_contribs``) per feature, on a sample
of up to 2,000 test rows drawn and computed on the cluster.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from distributed import Client, Future

from tasks.records import FeatureLayout, ModelCurves
from tasks.train.features import SPLIT_COLUMN, SPLITS

if TYPE_CHECKING:
    import dask.dataframe as dd
    import xgboost

# Points kept per curve, bins of the calibration plot, residuals kept, rows SHAP is run on.
CURVE_POINTS = 200
CALIBRATION_BINS = 10
RESIDUAL_POINTS = 1000
# TreeSHAP costs trees x leaves x depth^2 per row (about 2.5 ms a row on one thread for 200
# trees of depth 6 here): a sample of 2,000 rows ranks the features as well as all of them,
# in a few seconds of the workers' threads.
SHAP_ROWS = 2_000


def _thin(x: np.ndarray, y: np.ndarray, points: int = CURVE_POINTS) -> list[tuple[float, float]]:
    """At most ``points`` points of a curve, its ends included."""
    keep = np.unique(np.linspace(0, len(x) - 1, min(points, len(x))).round().astype(int))
    return [(float(a), float(b)) for a, b in zip(x[keep], y[keep], strict=True)]


def model_curves(
    layout: FeatureLayout,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    version: str,
    role: Literal["candidate", "champion"],
    metrics: dict[str, float],
) -> ModelCurves:
    """The curves of one model's predictions of the test rows."""
    from sklearn import metrics as skm

    curves = ModelCurves(version=version, role=role, metrics=metrics)
    if layout.task == "binary":
        fpr, tpr, _ = skm.roc_curve(y_true, y_pred)
        precision, recall, _ = skm.precision_recall_curve(y_true, y_pred)
        bins = np.minimum((y_pred * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
        calibration = [
            (
                float(y_pred[bins == b].mean()),
                float(y_true[bins == b].mean()),
                int((bins == b).sum()),
            )
            for b in range(CALIBRATION_BINS)
            if (bins == b).any()
        ]
        return curves.model_copy(
            update={
                "roc": _thin(fpr, tpr),
                "pr": _thin(recall[::-1], precision[::-1]),
                "calibration": calibration,
            }
        )
    if layout.task == "multiclass":
        labels = list(range(len(layout.classes or [])))
        matrix = skm.confusion_matrix(y_true, y_pred.argmax(axis=1), labels=labels)
        return curves.model_copy(update={"confusion": matrix.astype(int).tolist()})
    predictions = y_pred.reshape(-1)
    step = max(1, len(predictions) // RESIDUAL_POINTS)
    sample = slice(None, None, step)
    residuals = [
        (float(p), float(t - p)) for p, t in zip(predictions[sample], y_true[sample], strict=True)
    ]
    return curves.model_copy(update={"residuals": residuals[:RESIDUAL_POINTS]})


def contribution_sums(
    rows: pd.DataFrame, *, booster: xgboost.Booster, layout: FeatureLayout
) -> np.ndarray:
    """Sum over ``rows`` of each feature's |TreeSHAP contribution| (bias last), averaged over
    classes for a multiclass model."""
    import xgboost

    matrix = xgboost.DMatrix(rows[layout.features], enable_categorical=True)
    contributions = np.abs(np.asarray(booster.predict(matrix, pred_contribs=True)))
    # Rows x (features + bias), or rows x classes x (features + bias) for classes.
    sums = contributions.sum(axis=0)
    return np.asarray(sums.mean(axis=0) if sums.ndim == 2 else sums)


def shap_importance(
    client: Client, booster: xgboost.Booster, sample: pd.DataFrame, layout: FeatureLayout
) -> Future | None:
    """Start computing the mean |TreeSHAP contribution| per feature over ``sample`` (test
    rows' model inputs) on the cluster; :func:`shap_result` collects it.

    TreeSHAP costs milliseconds a row, on one thread: the sample is cut into one piece per
    worker thread, each computed with one thread, so it takes the cluster's cores (not the
    flow process's, which on Kubernetes is a small pod) while the caller goes on.
    """
    if sample.empty:
        return None
    threads = max(1, sum(client.nthreads().values()))
    single = booster.copy()
    single.set_param({"nthread": 1})
    [model] = client.scatter([single], broadcast=True, hash=False)
    bounds = np.linspace(0, len(sample), min(threads, len(sample)) + 1).astype(int)
    pieces = [sample.iloc[a:b] for a, b in itertools.pairwise(bounds)]
    sums = client.map(contribution_sums, pieces, booster=model, layout=layout, pure=False)
    return client.submit(_mean_importance, sums, rows=len(sample), layout=layout, pure=False)


def _mean_importance(
    sums: list[np.ndarray], *, rows: int, layout: FeatureLayout
) -> dict[str, float]:
    means = np.sum(sums, axis=0) / rows
    return {f: float(v) for f, v in zip(layout.features, means[:-1], strict=True)}


def shap_result(pending: Future | None) -> dict[str, float]:
    """The importance :func:`shap_importance` started ({} for an empty sample)."""
    if pending is None:
        return {}
    importance: dict[str, float] = pending.result()
    return importance


def shap_sample(
    client: Client, prepared: dd.DataFrame, layout: FeatureLayout, *, test_rows: int
) -> pd.DataFrame:
    """Up to ``SHAP_ROWS`` test rows' model inputs, drawn evenly from every partition on the
    workers: a sample of a few hundred kilobytes is what reaches this process."""
    rows = prepared[prepared[SPLIT_COLUMN] == SPLITS["test"]][layout.features]
    if test_rows > SHAP_ROWS:
        rows = rows.sample(frac=SHAP_ROWS / test_rows, random_state=0)
    sample: pd.DataFrame = client.compute(rows).result()
    return sample
