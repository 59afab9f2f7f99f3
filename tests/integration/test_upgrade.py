"""A lake written by the previous release keeps working: a warm run on it reuses its
partitions, validations and model, and the champion stays."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest

from blocks.registry import ModelRegistry
from flows.pipeline import ml_pipeline
from flows.score import score_flow
from tests.support.release_lakes import copy_release_lake, files_with_mtimes

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


def test_a_lake_of_release_0_1_is_reused_by_a_warm_run(demo_spec: str, tmp_path: Path) -> None:
    old = copy_release_lake("0.1.0", tmp_path)
    registry = ModelRegistry(lake=str(old.lake))
    champion = registry.champion("customers")
    assert champion is not None
    before = registry.metadata("customers", champion)
    partitions = files_with_mtimes(old.lake, "datasets/customers/partitions")
    validations = files_with_mtimes(old.lake, "runs/results/validate-partition")

    result = ml_pipeline(spec=demo_spec, source=str(old.landing), lake=str(old.lake))

    # The same data: its one-file partitions are adopted after hashing each file once (not
    # parsed: no file is read into a split), none is written again.
    assert result.partitions_total == result.partitions_accepted == 4
    assert result.new_partitions == 0 and result.files_read == 0 and result.rows == 2000
    assert files_with_mtimes(old.lake, "datasets/customers/partitions") == partitions
    # Every partition's validation came from the release's cached records.
    assert files_with_mtimes(old.lake, "runs/results/validate-partition") == validations
    latest = json.loads((old.lake / "datasets/customers/latest.json").read_text())
    assert result.dataset_version == latest["version"] == before.dataset_version
    # The champion stays. With the XGBoost it was trained with, it is the model for these
    # inputs and is reused, not retrained.
    assert registry.champion("customers") == champion == result.champion
    if before.xgboost_version == version("xgboost"):
        assert result.model_reused and result.model_version == champion
        assert not result.promoted
        assert [m.version for m in registry.versions("customers")] == [champion]
    # The next run knows the files from the landing index: it does not even hash them.
    again = ml_pipeline(spec=demo_spec, source=str(old.landing), lake=str(old.lake))
    assert again.files_read == 0 and again.dataset_version == result.dataset_version
    assert list((old.lake / "datasets/customers/landing").glob("*.json"))

    # The 0.1 champion scores new files; without a training profile, drift is not judged.
    scored = score_flow(spec=demo_spec, source=str(old.landing), lake=str(old.lake))
    assert scored.model_version == champion and scored.rows_scored == 2000
    assert scored.drift.status == "no-profile" and scored.drift.features == []
    assert "the model has no training profile" in scored.summary()
