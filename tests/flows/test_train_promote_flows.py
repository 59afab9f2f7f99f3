from __future__ import annotations

import json
from pathlib import Path

import pytest
import xgboost

from blocks.registry import ModelRegistry
from flows.ingest import ingest_flow
from flows.promote import promote_flow
from flows.train import train_flow
from flows.validate import validate_flow

from ..conftest import read_artifact

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


@pytest.fixture(scope="module")
def validated(demo_source: Path, tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> str:
    """A lake holding the clean demo data, ingested and validated by the stage flows."""
    from ..conftest import DEMO_SPEC

    lake = str(tmp_path_factory.mktemp("train-lake"))
    ingest_flow(spec=str(DEMO_SPEC), source=str(demo_source), lake=lake)
    validate_flow(spec=str(DEMO_SPEC), lake=lake)
    return lake


def test_train_registers_a_ubjson_model_with_full_metadata_and_reuses_it(
    demo_spec: str, validated: str
) -> None:
    candidate = train_flow(spec=demo_spec, lake=validated)
    assert not candidate.reused
    assert candidate.metrics["roc_auc"] > 0.8
    assert candidate.rows["train"] > candidate.rows["test"] > 0
    folder = Path(validated) / "models" / "customers" / "versions" / candidate.version
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "model.ubj"]
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["dataset_version"] == candidate.dataset_version
    assert meta["xgboost_version"] == xgboost.__version__
    assert meta["params"]["tree_method"] == "hist"
    assert len(meta["eval_history"]["validation"]["logloss"]) >= meta["best_iteration"] + 1
    assert set(meta["timings"]) >= {"train_seconds", "load_seconds"}
    assert meta["layout"]["categories"]["contract"] == ["month-to-month", "one-year", "two-year"]
    booster = xgboost.Booster()
    booster.load_model(str(folder / "model.ubj"))
    assert booster.num_boosted_rounds() == meta["best_iteration"] + 1

    again = train_flow(spec=demo_spec, lake=validated)
    assert again.reused and again.version == candidate.version
    markdown, _ = read_artifact("training-customers")
    assert "Reused" in markdown


def test_promotion_keeps_a_better_champion_and_records_every_decision(
    demo_spec: str, spec_variant, validated: str
) -> None:
    registry = ModelRegistry(lake=validated)
    champion = train_flow(spec=demo_spec, lake=validated)
    first = promote_flow(spec=demo_spec, lake=validated, model_version=champion.version)
    assert first.promoted and first.reason == "no champion yet"
    assert registry.champion("customers") == champion.version

    # A deliberately weak candidate: two shallow trees.
    weak_spec = spec_variant(training={"params": {"max_depth": 1}, "num_boost_round": 2})
    weak = train_flow(spec=weak_spec, lake=validated)
    assert weak.version != champion.version
    second = promote_flow(spec=weak_spec, lake=validated, model_version=weak.version)
    assert not second.promoted
    assert second.champion_before == second.champion_after == champion.version
    # The champion was re-scored on the candidate's test split, which here is the same split.
    assert second.champion_value == pytest.approx(champion.metrics["roc_auc"], abs=1e-9)
    assert second.candidate_value is not None and second.candidate_value < second.champion_value
    assert registry.champion("customers") == champion.version

    third = promote_flow(spec=demo_spec, lake=validated)  # default: newest version (the weak one)
    assert third.candidate == weak.version and not third.promoted
    decisions = registry.decisions("customers")
    assert [d.promoted for d in decisions][-3:] == [True, False, False]
    card, artifact = read_artifact("model-card-customers")
    assert f"# Model card: customers @ {weak.version}" in card
    assert "not promoted" in card and "Not promoted" in artifact.description
