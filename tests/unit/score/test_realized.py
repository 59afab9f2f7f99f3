"""The realized metric from sums added over splits equals scikit-learn on all rows."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.score.realized import add_sums, labeled_sums, realized_metrics
from tasks.train.metrics import evaluate

pytestmark = pytest.mark.timeout(60)


def in_parts(task: str, y: np.ndarray, p: np.ndarray, classes: int) -> dict[str, float]:
    parts = [labeled_sums(task, y[i::3], p[i::3], classes) for i in range(3)]
    return realized_metrics(task, add_sums(parts))


def test_binary_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p = np.clip(y * 0.3 + rng.random(5000) * 0.7, 0, 1)
    got, want = in_parts("binary", y, p, 2), evaluate("binary", y, p)
    assert got["roc_auc"] == pytest.approx(want["roc_auc"], abs=2e-3)
    for name in ("logloss", "accuracy", "f1"):
        assert got[name] == pytest.approx(want[name], rel=1e-9)


def test_multiclass_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 3000)
    p = rng.dirichlet([1, 1, 1], 3000)
    got, want = in_parts("multiclass", y, p, 3), evaluate("multiclass", y, p)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-9)


def test_regression_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=2000)
    p = y + rng.normal(scale=0.3, size=2000)
    got, want = in_parts("regression", y, p, 0), evaluate("regression", y, p)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-9)


def test_no_labeled_rows_means_no_metric() -> None:
    assert realized_metrics("binary", add_sums([{}, {}])) == {}
