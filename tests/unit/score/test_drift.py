"""Drift verdicts from profiles: PSI, unseen categories, thresholds, too few rows."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.records import DataProfile, FeatureLayout, FeatureProfile, ScoringModel
from tasks.score.drift import drift_report, js_distance, psi
from tasks.spec import MonitoringSpec

pytestmark = pytest.mark.timeout(60)

EDGES = [float(e) for e in range(1, 10)]
LAYOUT = FeatureLayout(
    task="binary",
    target="y",
    key=None,
    features=["x", "c"],
    feature_types={"x": "float", "c": "category"},
    categories={"c": ["a", "b"]},
    classes=["0", "1"],
    split={},
)


def numeric(counts: list[int]) -> FeatureProfile:
    return FeatureProfile(kind="numeric", rows=sum(counts), edges=EDGES, counts=counts)


def categorical(counts: dict[str, int]) -> FeatureProfile:
    return FeatureProfile(kind="categorical", rows=sum(counts.values()), categories=counts)


def profile(x: list[int], c: dict[str, int], rows_of: str = "train") -> DataProfile:
    return DataProfile(
        rows=sum(x), features={"x": numeric(x), "c": categorical(c)}, rows_of=rows_of
    )


def model(training: DataProfile | None) -> ScoringModel:
    return ScoringModel(
        model_name="m",
        version="v1",
        model_uri="",
        layout=LAYOUT,
        metric="roc_auc",
        profile=training,
    )


TRAINING = profile([1000] * 10, {"a": 5000, "b": 5000})


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift() -> None:
    same = np.array([100] * 10)
    assert psi(same, same * 3) == pytest.approx(0.0, abs=1e-9)
    mild = psi(same, np.array([120, 110, 100, 100, 100, 100, 100, 100, 90, 80]))
    strong = psi(same, np.array([400, 300, 100, 50, 50, 50, 20, 10, 10, 10]))
    assert 0 < mild < 0.1 < 0.25 < strong
    assert js_distance(same, same) == pytest.approx(0.0, abs=1e-9)
    assert 0 < js_distance(same, np.array([1000] + [0] * 9)) <= 1


def test_the_same_distribution_is_ok() -> None:
    report = drift_report(
        model(TRAINING),
        profile([500] * 10, {"a": 2500, "b": 2500}, "scored"),
        MonitoringSpec(),
        metric="roc_auc",
        expected=None,
        realized={},
    )
    assert report.status == "ok" and report.drifted == []


def test_a_shifted_feature_and_a_new_category_alert_on_exactly_those() -> None:
    shifted = [0, 0, 0, 0, 0, 1000, 1000, 1000, 1000, 1000]
    scored = profile(shifted, {"a": 2500, "b": 2000, "new": 500}, "scored")
    report = drift_report(
        model(TRAINING), scored, MonitoringSpec(), metric="roc_auc", expected=None, realized={}
    )
    assert report.status == "alert"
    assert sorted(report.drifted) == ["c", "x"]
    category = next(f for f in report.features if f.feature == "c")
    assert category.unseen == ["new"] and category.unseen_share == pytest.approx(0.1)


def test_thresholds_come_from_the_spec() -> None:
    scored = profile(
        [1300, 1200, 1100, 1000, 1000, 1000, 1000, 900, 800, 700], {"a": 5000, "b": 5000}, "scored"
    )
    lenient = drift_report(
        model(TRAINING),
        scored,
        MonitoringSpec(psi_warn=0.5, psi_alert=1.0),
        metric="roc_auc",
        expected=None,
        realized={},
    )
    strict = drift_report(
        model(TRAINING),
        scored,
        MonitoringSpec(psi_warn=0.001, psi_alert=0.01),
        metric="roc_auc",
        expected=None,
        realized={},
    )
    assert lenient.status == "ok" and strict.status == "alert"


def test_few_rows_or_no_training_profile_are_reported_not_judged() -> None:
    small = profile([10] * 10, {"a": 100}, "scored")
    assert (
        drift_report(
            model(TRAINING), small, MonitoringSpec(), metric="roc_auc", expected=None, realized={}
        ).status
        == "too-few-rows"
    )
    assert (
        drift_report(
            model(None), small, MonitoringSpec(), metric="roc_auc", expected=None, realized={}
        ).status
        == "no-profile"
    )


def test_a_realized_metric_worse_than_the_test_value_alerts() -> None:
    scored = profile([500] * 10, {"a": 2500, "b": 2500}, "scored")
    report = drift_report(
        model(TRAINING),
        scored,
        MonitoringSpec(metric_drop=0.05),
        metric="roc_auc",
        expected=0.9,
        realized={"roc_auc": 0.8},
    )
    assert report.status == "alert" and report.realized == 0.8 and report.drifted == []
