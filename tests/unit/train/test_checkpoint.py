"""Training checkpoints: the history rules, the lake round trip, and a real resumed training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost

from tasks.train.checkpoint import Checkpoints, best_round, merge_history, stopped_early
from tasks.train.distributed import train_distributed
from tasks.train.plan import plan_training

pytestmark = pytest.mark.timeout(180)


def test_histories_merge_round_after_round() -> None:
    before = {"validation": {"auc": [0.6, 0.7]}, "train": {"auc": [0.65, 0.75]}}
    after = {"validation": {"auc": [0.72]}, "train": {"auc": [0.8]}}
    merged = merge_history(before, after)
    assert merged == {"validation": {"auc": [0.6, 0.7, 0.72]}, "train": {"auc": [0.65, 0.75, 0.8]}}
    assert before["validation"]["auc"] == [0.6, 0.7]  # inputs untouched


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"auc": [0.6, 0.8, 0.8, 0.7]}, (1, 0.8)),  # maximized; the first of equals
        ({"logloss": [0.7, 0.5, 0.5, 0.6]}, (1, 0.5)),  # minimized
        ({"logloss": [0.7, 0.6], "auc": [0.6, 0.5]}, (0, 0.6)),  # the last metric decides
        ({"ndcg@5": [0.2, 0.3]}, (1, 0.3)),
        ({"rmse": [3.0, 2.0, 1.0]}, (2, 1.0)),
    ],
)
def test_best_round_judges_like_early_stopping(
    metrics: dict[str, list[float]], expected: tuple[int, float]
) -> None:
    assert best_round({"validation": metrics}) == expected


def test_stopped_early_only_after_enough_rounds_without_improvement() -> None:
    history = {"validation": {"logloss": [0.9, 0.5, 0.6, 0.7]}}
    assert not stopped_early(history, 3)
    assert stopped_early(history, 2)
    assert not stopped_early(history, None)
    assert not stopped_early({}, 2)


def tiny_booster(rounds: int) -> xgboost.Booster:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    return xgboost.train(
        {"objective": "binary:logistic"},
        xgboost.DMatrix(x, label=(x[:, 0] > 0).astype(int)),
        num_boost_round=rounds,
    )


def test_checkpoints_round_trip_through_the_lake(tmp_path: Path) -> None:
    checkpoints = Checkpoints(str(tmp_path / "lake"), "customers", "abc123")
    assert checkpoints.latest() is None
    checkpoints.save(tiny_booster(10), {"validation": {"auc": [0.5] * 10}})
    checkpoints.save(tiny_booster(20), {"validation": {"auc": [0.5] * 20}})
    booster, state = checkpoints.latest()  # type: ignore[misc]
    assert booster.num_boosted_rounds() == 20 and state.rounds == 20
    folder = tmp_path / "lake/runs/checkpoints/customers/abc123"
    # Only the current round's model is kept; the state file points at it.
    assert sorted(p.name for p in folder.iterdir()) == ["round-000020.ubj", "state.json"]
    checkpoints.clear()
    assert checkpoints.latest() is None and not folder.exists()


def test_a_training_resumes_from_its_checkpoint(ingested, dask_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = plan_training(spec=ingested.spec, version=ingested.version, report=ingested.report)
    common = {
        "uris": plan.partition_uris,
        "layout": plan.layout,
        "params": plan.params,
        "early_stopping_rounds": None,
    }
    whole = train_distributed(dask_client, num_boost_round=40, **common)
    checkpoints = Checkpoints(str(tmp_path / "lake"), "customers", plan.model_version)
    # A training that stopped after 20 rounds (its last checkpoint at 20) ...
    first = train_distributed(
        dask_client, num_boost_round=20, checkpoints=checkpoints, checkpoint_every=10, **common
    )
    assert first.resumed_from_round is None
    assert checkpoints.latest()[1].rounds == 20  # type: ignore[index]
    # ... continues from round 20, not round 0.
    resumed = train_distributed(
        dask_client, num_boost_round=40, checkpoints=checkpoints, checkpoint_every=10, **common
    )
    assert resumed.resumed_from_round == 20
    assert resumed.booster.num_boosted_rounds() == 40
    (metric,) = resumed.history["validation"]
    assert len(resumed.history["validation"][metric]) == 40
    assert resumed.history["validation"][metric][:20] == first.history["validation"][metric]
    assert resumed.metrics["roc_auc"] == pytest.approx(whole.metrics["roc_auc"], abs=0.005)
