"""Scoring with the champion: predictions equal XGBoost's own, caching, quarantine, drift and
its event, explanations, for every task kind."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import xgboost

from blocks.registry import ModelRegistry
from flows.pipeline import ml_pipeline
from flows.score import score_flow
from tasks.demo_data import write_demo_data
from tasks.errors import RegistryError, SourceError
from tasks.records import ScoringResult
from tasks.score.publish import DRIFT_EVENT
from tasks.spec import load_spec
from tasks.train.features import model_inputs
from tests.support.bokeh_pages import named_sources
from tests.support.paths import DEMO_SPEC

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


@pytest.fixture(scope="module")
def trained(demo_source: Path, tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> str:
    """A lake whose champion was trained on the clean demo data."""
    lake = str(tmp_path_factory.mktemp("score-lake"))
    result = ml_pipeline(spec=str(DEMO_SPEC), source=str(demo_source), lake=lake)
    assert result.promoted
    return lake


def batch(root: Path, name: str, **options: Any) -> str:
    out = root / name
    write_demo_data(str(out), **{"rows": 3000, "files": 3, "seed": 51, **options})
    return str(out)


def raw_rows(source: str) -> pd.DataFrame:
    """Every row of the landing files, read with pandas alone (not the pipeline's reader)."""
    frames = []
    for path in sorted(Path(source).iterdir()):
        if path.name.endswith(".parquet"):
            frames.append(pd.read_parquet(path))
        else:
            frames.append(pd.read_csv(path, dtype={"customer_id": str}))
    return pd.concat(frames, ignore_index=True)


def predictions(result: ScoringResult) -> pd.DataFrame:
    return pd.concat(
        [pq.read_table(uri.removeprefix("file://")).to_pandas() for uri in result.predictions],
        ignore_index=True,
    )


def expected_predictions(lake: str, spec: str, version: str, rows: pd.DataFrame) -> np.ndarray:
    """XGBoost's own prediction from the registered model file on the same rows."""
    name = load_spec(spec).name
    registry = ModelRegistry(lake=lake)
    booster = xgboost.Booster(model_file=registry.model_uri(name, version).removeprefix("file://"))
    layout = registry.metadata(name, version).layout
    return np.asarray(booster.inplace_predict(model_inputs(rows, layout)))


def test_predictions_equal_the_model_files_own_and_a_rerun_scores_nothing(
    trained: str, tmp_path: Path
) -> None:
    source = batch(tmp_path, "incoming", unlabeled=True)
    result = score_flow(spec=str(DEMO_SPEC), source=source, lake=trained)
    champion = ModelRegistry(lake=trained).champion("customers")
    assert result.model_version == champion and result.champion
    assert (result.rows_scored, result.files_new, result.files_quarantined) == (3000, 3, 0)

    scored = predictions(result)
    assert len(scored) == 3000 and scored["customer_id"].is_unique
    assert set(scored["model_version"]) == {champion}
    rows = raw_rows(source).set_index("customer_id").loc[scored["customer_id"]].reset_index()
    want = expected_predictions(trained, str(DEMO_SPEC), result.model_version, rows)
    np.testing.assert_allclose(scored["probability_True"], want, atol=1e-6)
    assert list(scored["prediction"]) == ["True" if p >= 0.5 else "False" for p in want]
    # Unlabeled rows: drift is judged, there is no realized metric.
    assert result.drift.status in ("ok", "warn") and result.drift.realized is None

    again = score_flow(spec=str(DEMO_SPEC), source=source, lake=trained)
    assert (again.files_new, again.files_cached) == (0, 3)
    assert again.predictions == result.predictions
    assert again.manifest_uri == result.manifest_uri


def test_a_file_missing_a_feature_is_quarantined_and_the_others_scored(
    trained: str, tmp_path: Path
) -> None:
    source = batch(tmp_path, "incoming")
    broken = Path(source) / "customers-0001.csv.gz"
    frame = pd.read_csv(broken).drop(columns=["tenure_months"])
    broken.unlink()
    frame.to_csv(Path(source) / "customers-0001.csv", index=False)
    result = score_flow(spec=str(DEMO_SPEC), source=source, lake=trained)
    assert result.files_quarantined == 1 and result.rows_scored == 2000
    assert "customers-0001.csv: missing column(s) 'tenure_months'" in result.quarantined[0]
    assert set(predictions(result)["source_uri"]) == {
        f"file://{source}/customers-0000.csv",
        f"file://{source}/customers-0002.parquet",
    }
    # Labeled rows: the realized metric, close to the model's test value.
    assert result.drift.metric == "roc_auc" and result.drift.realized is not None
    assert abs(result.drift.realized - (result.drift.expected or 0)) < 0.1


def test_a_file_that_fails_a_check_is_quarantined_alone(trained: str, tmp_path: Path) -> None:
    source = batch(tmp_path, "incoming", unlabeled=True)
    path = Path(source) / "customers-0000.csv"
    frame = pd.read_csv(path)
    frame.loc[5, "age"] = 150  # the spec expects ages of 18 to 110
    frame.to_csv(path, index=False)
    result = score_flow(spec=str(DEMO_SPEC), source=source, lake=trained)
    assert result.files_quarantined == 1 and result.rows_scored == 2000
    assert "customers-0000.csv: failed 1 expectation(s)" in result.quarantined[0]
    assert "expect_column_values_to_be_between(age)" in result.quarantined[0]


def test_the_model_is_checked_before_any_data_is_read(
    tmp_path: Path, trained: str, spec_variant: Any, prefect_api: str
) -> None:
    missing = str(tmp_path / "no-such-folder")
    with pytest.raises(RegistryError, match="model 'customers' has no champion"):
        score_flow(spec=str(DEMO_SPEC), source=missing, lake=str(tmp_path / "empty-lake"))
    with pytest.raises(RegistryError, match="has no version 'nope'"):
        score_flow(spec=str(DEMO_SPEC), source=missing, lake=trained, model="nope")
    retyped = spec_variant(columns__support_calls__type="float")
    with pytest.raises(RegistryError, match="'support_calls': the model was trained on int"):
        score_flow(spec=retyped, source=missing, lake=trained)
    with pytest.raises(SourceError, match="landing location does not exist"):
        score_flow(spec=str(DEMO_SPEC), source=missing, lake=trained)


def drift_events(api: str, model: str) -> list[dict[str, Any]]:
    page = httpx.post(
        f"{api}/events/filter",
        json={
            "filter": {
                "event": {"name": [DRIFT_EVENT]},
                "resource": {"id": [f"mlops.model.{model}"]},
                "occurred": {"since": "2000-01-01T00:00:00Z"},
            },
            "limit": 50,
        },
    ).json()
    events: list[dict[str, Any]] = page["events"]
    return events


def test_drift_alerts_on_exactly_the_shifted_feature_and_the_new_category(
    trained: str,
    tmp_path: Path,
    prefect_api: str,
    demo_source: Path,
    spec_variant: Callable[..., str],
) -> None:
    fresh = score_flow(
        spec=str(DEMO_SPEC), source=batch(tmp_path, "fresh", seed=61, unlabeled=True), lake=trained
    )
    assert fresh.drift.status != "alert", fresh.summary()
    assert drift_events(prefect_api, "customers") == []

    shifted = batch(
        tmp_path, "shifted", seed=62, unlabeled=True, drift=["monthly_charges", "region"]
    )
    # With retrain_with_scored on: these rows have no target, so none joins the training data.
    feedback = spec_variant(monitoring__retrain_with_scored=True)
    result = score_flow(spec=feedback, source=shifted, lake=trained)
    assert result.drift.status == "alert"
    assert result.added_to_training == [] and not (demo_source / "scored").exists()
    assert sorted(result.drift.drifted) == ["monthly_charges", "region"]
    region = next(f for f in result.drift.features if f.feature == "region")
    assert region.unseen == ["region-new"] and 0.15 < region.unseen_share < 0.25
    # A category the model never saw is scored (as missing), not refused.
    assert result.rows_scored == 3000 and result.files_quarantined == 0

    deadline = time.monotonic() + 30
    while not (events := drift_events(prefect_api, "customers")):
        assert time.monotonic() < deadline, "the drift event never reached the server"
        time.sleep(0.5)
    payload = events[0]["payload"]
    assert sorted(payload["drifted"]) == ["monthly_charges", "region"]
    assert payload["model_version"] == result.model_version
    assert payload["manifest"] == result.manifest_uri
    # What the retraining trigger starts ml-pipeline with.
    assert payload["spec"] == feedback and payload["source"] == shifted
    assert payload["training_source"] == str(demo_source)
    assert payload["added_to_training"] == []
    # The drift report overlays training and scored shares of every feature's bins.
    run = result.manifest_uri.rsplit("/", 1)[-1].removesuffix(".json")
    page = Path(trained) / "runs/reports/customers" / result.model_version / f"drift-{run}.html"
    charges = named_sources(page.read_text())["drift:monthly_charges"]
    assert sum(charges["train"]) == pytest.approx(1.0) == sum(charges["scored"])
    metrics = (Path(trained) / "runs" / "metrics" / "customers-scoring.prom").read_text()
    assert 'mlops_feature_psi{dataset="customers",feature="monthly_charges"}' in metrics
    assert 'mlops_rows_scored{dataset="customers"} 3000.0' in metrics


def test_explanations_are_the_models_own_contributions(
    trained: str, tmp_path: Path, spec_variant: Any
) -> None:
    spec = spec_variant(scoring={"explain": 3})
    source = batch(tmp_path, "incoming", rows=600, files=2, unlabeled=True)
    result = score_flow(spec=spec, source=source, lake=trained)
    scored = predictions(result)
    assert {f"explain_{i}_feature" for i in (1, 2, 3)} <= set(scored.columns)
    registry = ModelRegistry(lake=trained)
    layout = registry.metadata("customers", result.model_version).layout
    booster = registry.load_booster("customers", result.model_version)
    rows = raw_rows(source).set_index("customer_id").loc[scored["customer_id"]].reset_index()
    matrix = xgboost.DMatrix(model_inputs(rows, layout), enable_categorical=True)
    contributions = booster.predict(matrix, pred_contribs=True)[:, :-1]
    top = np.abs(contributions).argmax(axis=1)
    assert list(scored["explain_1_feature"]) == [layout.features[i] for i in top]
    np.testing.assert_allclose(
        scored["explain_1_contribution"], contributions[np.arange(len(rows)), top], atol=1e-5
    )


@pytest.mark.parametrize(
    ("task", "changes", "columns"),
    [
        (
            "multiclass",
            {"target": "contract", "task": "multiclass", "promotion__metric": "logloss"},
            ["probability_month-to-month", "probability_one-year", "probability_two-year"],
        ),
        (
            "regression",
            {"target": "monthly_charges", "task": "regression", "promotion__metric": "rmse"},
            ["prediction"],
        ),
    ],
)
def test_multiclass_and_regression_predictions_equal_the_model_files_own(
    task: str,
    changes: dict[str, Any],
    columns: list[str],
    demo_source: Path,
    tmp_path: Path,
    spec_variant: Any,
    prefect_api: str,
) -> None:
    spec = spec_variant(f"{task}.yaml", **changes)
    lake = str(tmp_path / "lake")
    trained = ml_pipeline(spec=spec, source=str(demo_source), lake=lake)
    assert trained.promoted
    # The training report draws the plot of the task: a confusion matrix or residuals.
    report = Path(lake) / "runs/reports/customers" / trained.model_version / "training.html"
    chart = "confusion" if task == "multiclass" else "residuals"
    assert f"eval:{chart}:candidate" in named_sources(report.read_text())
    target = changes["target"]
    source = batch(tmp_path, "incoming", rows=1500)
    result = score_flow(spec=spec, source=source, lake=lake)
    scored = predictions(result)
    rows = raw_rows(source).set_index("customer_id").loc[scored["customer_id"]].reset_index()
    want = expected_predictions(lake, spec, result.model_version, rows)
    np.testing.assert_allclose(scored[columns].to_numpy(), want.reshape(len(rows), -1), atol=1e-6)
    # The scored files carry the target: the realized metric is reported.
    assert result.drift.realized is not None
    assert target not in scored.columns


def test_a_new_champion_rescores_earlier_batches_only_when_asked(
    trained: str, tmp_path: Path, spec_variant: Any
) -> None:
    from flows.train import train_flow

    source = batch(tmp_path, "incoming", rows=1200, files=2, unlabeled=True)
    first = score_flow(spec=str(DEMO_SPEC), source=source, lake=trained)
    registry = ModelRegistry(lake=trained)
    before = registry.champion("customers")
    # Another version of the model (other training settings), made champion by hand.
    other = train_flow(spec=spec_variant(training__num_boost_round=40), lake=trained)
    registry.promote("customers", other.version, reason="test")
    try:
        kept = score_flow(spec=str(DEMO_SPEC), source=source, lake=trained)
        assert kept.model_version == before and not kept.champion
        assert f"the champion is now {other.version}" in kept.note
        assert (kept.files_new, kept.predictions) == (0, first.predictions)

        rescored = score_flow(spec=str(DEMO_SPEC), source=source, lake=trained, rescore=True)
        assert rescored.model_version == other.version and rescored.champion
        assert rescored.files_new == 2
        assert set(predictions(rescored)["model_version"]) == {other.version}
    finally:
        registry.promote("customers", before, reason="test done")
