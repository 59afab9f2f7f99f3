"""Drift: a scoring run's profile against the model's training profile (pure).

Per feature, on the training profile's bins (numeric) or categories: the population
stability index, the Jensen-Shannon distance (scipy), the change in null rate and, for
categories, the share of scored values the model never saw. The same for the prediction.
Thresholds come from the spec's ``monitoring``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from tasks.records import (
    DataProfile,
    DriftReport,
    FeatureDrift,
    FeatureProfile,
    ScoredSplit,
    ScoringModel,
)
from tasks.score.realized import add_sums, realized_metrics
from tasks.spec import METRICS, DatasetSpec, MonitoringSpec
from tasks.train.profile import merge_profiles

# Added to every bin's count before shares are taken: an empty bin on one side gives a
# large but finite PSI instead of an infinite one.
SMOOTHING = 0.5
PREDICTION = "prediction"


def _shares(counts: np.ndarray) -> np.ndarray:
    smoothed = counts.astype("float64") + SMOOTHING
    return smoothed / smoothed.sum()


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    p, q = _shares(expected), _shares(actual)
    return float(((q - p) * np.log(q / p)).sum())


def js_distance(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2: 0 same, 1 disjoint) of two count vectors."""
    from scipy.spatial.distance import jensenshannon

    if not expected.sum() or not actual.sum():
        return 0.0
    return float(jensenshannon(expected.astype(float), actual.astype(float), base=2))


def _verdict(value: float, monitoring: MonitoringSpec) -> Literal["ok", "warn", "alert"]:
    if value >= monitoring.psi_alert:
        return "alert"
    if value >= monitoring.psi_warn:
        return "warn"
    return "ok"


def compare_feature(
    name: str, train: FeatureProfile, scored: FeatureProfile, monitoring: MonitoringSpec
) -> FeatureDrift:
    """How one column of the scored rows moved from the training rows."""
    unseen: list[str] = []
    unseen_share = 0.0
    if train.kind == "categorical":
        known = sorted(train.categories)
        unseen = sorted(set(scored.categories) - set(train.categories))
        # Unseen categories share one bin: what matters is how much of the data they are.
        expected = np.array([train.categories[c] for c in known] + [0])
        actual = np.array(
            [scored.categories.get(c, 0) for c in known]
            + [sum(scored.categories[c] for c in unseen)]
        )
        present = scored.rows - scored.nulls
        unseen_share = float(actual[-1] / present) if present else 0.0
    else:
        expected, actual = np.array(train.counts), np.array(scored.counts)
    value = psi(expected, actual)
    verdict: Literal["ok", "warn", "alert"] = _verdict(value, monitoring)
    if unseen_share >= monitoring.unseen_alert:
        verdict = "alert"
    return FeatureDrift(
        feature=name,
        kind=train.kind,
        psi=value,
        js_distance=js_distance(expected, actual),
        null_fraction_train=train.null_fraction,
        null_fraction_scored=scored.null_fraction,
        unseen_share=unseen_share,
        unseen=unseen[:20],
        verdict=verdict,
    )


def metric_dropped(
    metric: str, realized: float, expected: float, task: str, monitoring: MonitoringSpec
) -> bool:
    """Whether the realized metric is worse than the test value by more than the margin."""
    maximize = METRICS[task].get(metric) == "maximize"  # type: ignore[index]
    worse = expected - realized if maximize else realized - expected
    return worse > monitoring.metric_drop


def drift_report(
    model: ScoringModel,
    scored: DataProfile,
    monitoring: MonitoringSpec,
    *,
    metric: str,
    expected: float | None,
    realized: Mapping[str, float],
) -> DriftReport:
    """The scored rows' drift from the model's training profile, with a verdict."""
    base: dict[str, Any] = {
        "model_name": model.model_name,
        "model_version": model.version,
        "rows": scored.rows,
        "thresholds": {
            "psi_warn": monitoring.psi_warn,
            "psi_alert": monitoring.psi_alert,
            "unseen_alert": monitoring.unseen_alert,
            "metric_drop": monitoring.metric_drop,
            "min_rows": float(monitoring.min_rows),
        },
        "metric": metric if metric in realized else None,
        "realized": realized.get(metric),
        "expected": expected if metric in realized else None,
        "scored_profile": scored,
    }
    training = model.profile
    if training is None:
        return DriftReport(status="no-profile", **base)
    features = [
        compare_feature(name, training.features[name], scored.features[name], monitoring)
        for name in model.layout.features
        if name in training.features and name in scored.features
    ]
    prediction = None
    if training.prediction is not None and scored.prediction is not None:
        prediction = compare_feature(PREDICTION, training.prediction, scored.prediction, monitoring)
    if scored.rows < monitoring.min_rows:
        return DriftReport(status="too-few-rows", features=features, prediction=prediction, **base)
    verdicts = [f.verdict for f in features] + ([prediction.verdict] if prediction else [])
    value = realized.get(metric)
    dropped = (
        value is not None
        and expected is not None
        and metric_dropped(metric, value, expected, model.layout.task, monitoring)
    )
    status = "alert" if "alert" in verdicts or dropped else "warn" if "warn" in verdicts else "ok"
    return DriftReport(status=status, features=features, prediction=prediction, **base)


def run_drift(model: ScoringModel, spec: DatasetSpec, scored: Sequence[ScoredSplit]) -> DriftReport:
    """The drift of everything a run scored: the splits' profiles and labeled sums added."""
    profile = merge_profiles([s.profile for s in scored], rows_of="scored")
    realized = realized_metrics(model.layout.task, add_sums([s.labeled for s in scored]))
    return drift_report(
        model,
        profile,
        spec.monitoring,
        metric=model.metric,
        expected=model.metrics.get(model.metric),
        realized=realized,
    )
