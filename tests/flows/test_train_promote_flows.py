from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest
import xgboost

from blocks.registry import ModelRegistry
from flows.ingest import ingest_flow
from flows.promote import promote_flow
from flows.train import train_flow
from flows.validate import validate_flow
from tasks.lake import partition_of
from tasks.promote.rescore import champion_score
from tasks.spec import load_spec
from tasks.train.features import LABEL_COLUMN, SPLIT_COLUMN, prepare_frame
from tasks.train.metrics import evaluate
from tasks.train.predictions import decode_predictions
from tests.support.artifacts import read_artifact
from tests.support.bokeh_pages import named_sources

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


@pytest.fixture(scope="module")
def validated(demo_source: Path, tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> str:
    """A lake holding the clean demo data, ingested and validated by the stage flows."""
    from tests.support.paths import DEMO_SPEC

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
    assert sorted(p.name for p in folder.iterdir()) == [
        "evaluation.json",
        "metadata.json",
        "model.ubj",
        "profile.json",
        "test_predictions.parquet",
    ]
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

    # The training report: linked from the run, a self-contained Bokeh page in the lake.
    data, artifact = read_artifact("training-report-customers")
    # Prefect stores a link artifact as markdown, "[text](url)".
    link = data.rsplit("(", 1)[-1].rstrip(")")
    assert link.endswith(f"runs/reports/customers/{candidate.version}/training.html")
    page = Path(link.removeprefix("file://")).read_text()
    # A Bokeh page that needs no network: BokehJS is inline, no script is loaded from a URL.
    assert "<script src=" not in page and "Bokeh" in page
    sources = named_sources(page)
    history = meta["eval_history"]
    for series in ("train", "validation"):
        curve = sources[f"curve:logloss:{series}"]
        assert curve["value"] == pytest.approx(history[series]["logloss"])
        assert curve["round"] == list(range(1, len(history[series]["logloss"]) + 1))
    features = sources["importance:gain"]["feature"]
    assert features and set(features) <= set(meta["layout"]["features"])
    assert f"customers@{candidate.version}" in artifact.description
    # Evaluation plots of the test rows, and SHAP importance beside the gain.
    roc = sources["eval:roc:candidate"]
    assert roc["x"][0] == 0.0 and roc["x"][-1] == 1.0 and roc["y"][-1] == 1.0
    assert "eval:pr:candidate" in sources and "eval:calibration:candidate" in sources
    shap = sources["importance:shap"]
    assert set(shap["feature"]) <= set(meta["layout"]["features"]) and min(shap["shap"]) >= 0


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
    # The weak candidate's evaluation draws the champion beside it on the same test rows.
    evaluation = registry.evaluation("customers", weak.version)
    assert evaluation is not None
    assert [(m.role, m.version) for m in evaluation.models] == [
        ("candidate", weak.version),
        ("champion", champion.version),
    ]
    assert evaluation.models[1].metrics["roc_auc"] == pytest.approx(second.champion_value)
    page = (Path(validated) / "runs/reports/customers" / weak.version / "training.html").read_text()
    assert "eval:roc:champion" in named_sources(page)

    third = promote_flow(spec=demo_spec, lake=validated)  # default: newest version (the weak one)
    assert third.candidate == weak.version and not third.promoted
    decisions = registry.decisions("customers")
    assert [d.promoted for d in decisions][-3:] == [True, False, False]
    card, artifact = read_artifact("model-card-customers")
    assert f"# Model card: customers @ {weak.version}" in card
    assert "not promoted" in card and "Not promoted" in artifact.description


def test_concurrent_promotions_of_one_model_are_serialized(
    demo_spec: str, tmp_path: Path, validated: str, dask_client, prefect_api: str
) -> None:
    """Eight promotions at once: every decision sees the champion the previous one left,
    and the alias history is one linear chain ending at the best candidate."""
    import os
    import subprocess
    import sys

    lake = str(tmp_path / "lake")
    source = ModelRegistry(lake=validated)
    base = source.metadata("customers", train_flow(spec=demo_spec, lake=validated).version)
    booster = source.load_booster("customers", base.version)
    registry = ModelRegistry(lake=lake)
    # Eight real models of different quality: the trained one cut to 1..8 trees, each with
    # its honest test metric.
    versions = []
    for trees in range(1, 9):
        metadata = base.model_copy(
            update={"version": f"{base.version[:8]}-{trees}trees", "best_iteration": trees - 1}
        )
        registry.register(metadata, bytes(booster[:trees].save_raw(raw_format="ubj")))
        auc = champion_score(
            dask_client, registry=registry, champion=metadata, candidate=base, metric="roc_auc"
        )
        registry._lake.write_json(
            registry._path("customers", "versions", metadata.version, "metadata.json"),
            metadata.model_copy(update={"metrics": {**base.metrics, "roc_auc": auc}}),
        )
        versions.append((auc, metadata.version))
    # Eight separate processes (as eight flow runs on eight machines would be), sharing the
    # session's Prefect API and one Dask cluster for the champion re-scoring.
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    script = (
        "import sys; from flows.promote import promote_flow; "
        "promote_flow(spec=sys.argv[1], lake=sys.argv[2], model_version=sys.argv[3], "
        "cluster=sys.argv[4])"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, demo_spec, lake, version, dask_client.scheduler.address],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _, version in versions
    ]
    errors = [run.communicate(timeout=400)[1] for run in runs]
    assert [run.returncode for run in runs] == [0] * 8, "\n".join(e[-2000:] for e in errors)
    decisions = registry.decisions("customers")
    assert len(decisions) == 8 and len(registry.decisions("customers")) == 8
    history = registry.aliases("customers")["history"]
    # One linear sequence: each move starts from where the previous one ended.
    assert history[0]["previous"] is None
    assert all(
        later["previous"] == earlier["champion"] for earlier, later in itertools.pairwise(history)
    )
    recorded = sorted(registry.decisions("customers"), key=lambda d: d.decided_at)
    champion = None
    for decision in recorded:
        assert decision.champion_before == champion, "a decision saw a stale champion"
        champion = decision.champion_after
    assert registry.champion("customers") == champion
    # No candidate beats the final champion by the policy's margin.
    margin = load_spec(demo_spec).promotion.min_improvement
    best = dict((v, auc) for auc, v in versions)[champion]
    assert all(auc <= best + margin for auc, _ in versions)


def test_a_decision_that_cannot_be_recorded_moves_the_alias_back(
    demo_spec: str, tmp_path: Path
) -> None:
    """The alias move and the decision record are one Prefect transaction."""
    from tests.support.models import metadata, model_bytes

    lake = str(tmp_path / "lake")
    registry = ModelRegistry(lake=lake)
    registry.register(metadata("v1").model_copy(update={"model_name": "customers"}), model_bytes())
    # The decision log cannot be written: a file stands where its folder belongs.
    decisions = tmp_path / "lake" / "models" / "customers" / "decisions"
    decisions.write_text("in the way")
    with pytest.raises(FileExistsError):
        promote_flow(spec=demo_spec, lake=lake, model_version="v1")
    # The alias had moved to v1 (no champion before); the rollback removed it again.
    assert registry.champion("customers") is None
    assert not (tmp_path / "lake" / "models" / "customers" / "aliases.json").exists()
    assert decisions.read_text() == "in the way"

    decisions.unlink()
    decision = promote_flow(spec=demo_spec, lake=lake, model_version="v1")
    assert decision.promoted and registry.champion("customers") == "v1"
    assert [d.candidate for d in registry.decisions("customers")] == ["v1"]
    assert [h["champion"] for h in registry.aliases("customers")["history"]] == ["v1"]


def test_added_files_warm_start_the_champion_until_too_many_rows_were_added(
    demo_source: Path, spec_variant, tmp_path: Path
) -> None:
    import shutil

    from tasks.demo_data import write_demo_data

    spec = spec_variant(training__warm_start={"max_new_fraction": 0.3})
    landing, lake = tmp_path / "landing", str(tmp_path / "lake")
    shutil.copytree(demo_source, landing)
    registry = ModelRegistry(lake=lake)

    def run() -> tuple[str, bool]:
        ingest_flow(spec=spec, source=str(landing), lake=lake)
        validate_flow(spec=spec, lake=lake)
        candidate = train_flow(spec=spec, lake=lake)
        promote_flow(spec=spec, lake=lake, model_version=candidate.version)
        return candidate.version, candidate.reused

    def add_file(seed: int, rows: int) -> None:
        extra = tmp_path / f"extra-{seed}"
        [written] = write_demo_data(str(extra), rows=rows, files=1, seed=seed)
        shutil.copy(written.path, landing / f"added-{seed}-{Path(written.path).name}")

    full, _ = run()  # 6,000 rows, from scratch
    base = registry.metadata("customers", full)
    assert base.warm_start is None and registry.champion("customers") == full

    add_file(31, 1200)  # +20% of the rows: continue the champion on the new file
    warm_version, reused = run()
    warm = registry.metadata("customers", warm_version)
    assert not reused and warm.warm_start is not None
    ws = warm.warm_start
    assert ws.base_version == full and ws.full_version == full
    assert ws.new_rows == 1200 and ws.base_rounds == base.best_iteration + 1
    assert ws.rounds >= 10 and len(warm.partitions) == len(base.partitions) + 1
    # Boosted on the new file's train rows only; judged on every partition's test rows.
    assert warm.rows["train"] < 1200 and warm.rows["test"] > base.rows["test"]
    booster = registry.load_booster("customers", warm_version)
    assert booster.num_boosted_rounds() == warm.best_iteration + 1 > ws.base_rounds
    # The champion's score on these test rows came with the warm start: no re-scoring.
    decision = registry.decisions("customers")[-1]
    assert decision.candidate == warm_version and decision.champion_before == full
    assert decision.champion_value == ws.base_metrics["roc_auc"]
    # Each model keeps its predictions of its test rows by partition. The warm start took
    # the champion's for the partitions it was trained on and predicted only the new
    # file's test rows: its score is the one predicting them all gives.
    kept = {
        version: decode_predictions(registry.test_predictions("customers", version) or b"")
        for version in (full, warm_version)
    }
    assert set(kept[full]) == {partition_of(u) for u in base.partitions}
    assert set(kept[warm_version]) == {partition_of(u) for u in warm.partitions}
    assert sum(len(k.labels) for k in kept[warm_version].values()) == warm.rows["test"]
    test = pd.concat(
        [prepare_frame(pd.read_parquet(u), warm.layout) for u in warm.partitions]
    ).query(f"{SPLIT_COLUMN} == 2")
    predicted = registry.load_booster("customers", full).inplace_predict(test[warm.layout.features])
    assert ws.base_metrics == evaluate("binary", test[LABEL_COLUMN].to_numpy(), predicted)

    # Nothing new: the same model again, whether or not it became the champion.
    again = train_flow(spec=spec, lake=lake)
    assert again.version == warm_version and again.reused
