from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.errors import TrainingError, ValidationFailed
from tasks.records import FeatureLayout
from tasks.train.distributed import train_distributed
from tasks.train.features import (
    LABEL_COLUMN,
    SPLIT_COLUMN,
    accepted_distinct,
    feature_layout,
    prepare_frame,
    split_codes,
)
from tasks.train.metrics import evaluate
from tasks.train.plan import plan_training

pytestmark = pytest.mark.timeout(180)

SPLIT = {"validation": 0.15, "test": 0.15, "salt": ""}


def test_split_is_deterministic_by_key_and_roughly_proportional() -> None:
    keys = pd.DataFrame({"id": [f"C{i}" for i in range(20_000)], "v": np.arange(20_000)})
    codes = split_codes(keys, key="id", split=SPLIT)
    shares = np.bincount(codes, minlength=3) / len(codes)
    assert shares == pytest.approx([0.70, 0.15, 0.15], abs=0.02)
    # A key lands in the same split whatever file, order or other columns it comes with.
    shuffled = keys.sample(frac=1.0, random_state=1).assign(v=0)
    again = pd.Series(split_codes(shuffled, key="id", split=SPLIT), index=shuffled.index)
    assert (again.sort_index().to_numpy() == codes).all()
    salted = split_codes(keys, key="id", split={**SPLIT, "salt": "other"})
    assert (salted != codes).mean() > 0.2


def test_numeric_keys_split_the_same_whatever_dtype_they_are_read_with() -> None:
    # Dask reads an int column as float64 from a file where it has nulls.
    ints = pd.DataFrame({"id": np.arange(10_000)})
    floats = ints.astype({"id": "float64"})
    assert (
        split_codes(ints, key="id", split=SPLIT) == split_codes(floats, key="id", split=SPLIT)
    ).all()
    salted = split_codes(ints, key="id", split={**SPLIT, "salt": "other"})
    assert (salted != split_codes(ints, key="id", split=SPLIT)).mean() > 0.2


def test_keyless_split_hashes_whole_rows_in_column_name_order() -> None:
    frame = pd.DataFrame({"a": np.arange(1000), "b": np.arange(1000) * 2})
    assert (
        split_codes(frame, key=None, split=SPLIT)
        == split_codes(frame[["b", "a"]], key=None, split=SPLIT)
    ).all()


def _layout(**changes) -> FeatureLayout:
    base = {
        "task": "binary",
        "target": "y",
        "key": "id",
        "features": ["n", "flag", "when", "cat"],
        "feature_types": {"n": "int", "flag": "bool", "when": "datetime", "cat": "category"},
        "categories": {"cat": ["a", "b"]},
        "classes": ["False", "True"],
        "split": SPLIT,
    }
    return FeatureLayout(**{**base, **changes})


def test_prepare_frame_encodes_features_labels_and_drops_missing_targets() -> None:
    frame = pd.DataFrame(
        {
            "id": ["x", "y", "z", "w"],
            "n": [1, 2, 3, 4],
            "flag": pd.Series([True, None, False, True], dtype=object),
            "when": pd.to_datetime(["1970-01-02", None, "1970-01-01", "1970-01-01"]),
            "cat": pd.Categorical(["a", "zzz", None, "b"]),
            "y": pd.Series([True, False, None, False], dtype=object),
        }
    )
    out = prepare_frame(frame, _layout())
    assert list(out.index) == [0, 1, 3]  # the row without a target is gone
    assert out["flag"].tolist()[0] == 1.0 and np.isnan(out["flag"].tolist()[1])
    assert out["when"].tolist()[0] == 86400.0
    assert list(out["cat"].cat.categories) == ["a", "b"]
    assert out["cat"].isna().tolist() == [False, True, False]  # unknown category → missing
    assert out[LABEL_COLUMN].tolist() == [1, 0, 0]
    assert set(out[SPLIT_COLUMN].unique()) <= {0, 1, 2}
    assert prepare_frame(frame.iloc[:0], _layout()).columns.tolist() == out.columns.tolist()


def test_layout_from_manifest_and_single_class_target(ingested) -> None:
    layout = feature_layout(ingested.spec, ingested.version, ingested.report.accepted)
    assert layout.classes == ["False", "True"]
    assert layout.categories["contract"] == ["month-to-month", "one-year", "two-year"]
    assert layout.categories["region"] == ["central", "east", "north", "south", "west"]
    one_class = ingested.version.model_copy(
        update={
            "partitions": [
                p.model_copy(update={"distinct": {**p.distinct, "churned": ["True"]}})
                for p in ingested.version.partitions
            ]
        }
    )
    with pytest.raises(TrainingError, match=r"target 'churned' has 1 class\(es\) \(True\)"):
        feature_layout(ingested.spec, one_class, ingested.report.accepted)


def test_a_rejected_files_values_leave_the_layout(ingested) -> None:
    """A category or class only a rejected file had is not the model's."""
    first = ingested.version.partitions[0]
    segments = [
        # This file lacks two of the partition's contracts; the other has them all.
        first.segments[0].model_copy(update={"distinct": {"contract": ["one-year"]}}),
        first.segments[0].model_copy(
            update={"source_uri": "file:///other.csv", "start": first.rows, "distinct": {}}
        ),
    ]
    packed = first.model_copy(update={"segments": segments, "rows": 2 * first.rows})
    version = ingested.version.model_copy(update={"partitions": [packed]})
    accepted = [packed.partition_id]
    assert accepted_distinct(version, accepted)["contract"] == set(packed.distinct["contract"])
    kept = accepted_distinct(version, accepted, rejected_files={"file:///other.csv"})
    assert kept["contract"] == {"one-year"} and kept["churned"] == set(packed.distinct["churned"])
    every = accepted_distinct(version, accepted, rejected_files={segments[0].source_uri})
    assert every["contract"] == set(packed.distinct["contract"])


def test_plan_refuses_a_failed_report_and_is_content_addressed(ingested) -> None:
    plan = plan_training(spec=ingested.spec, version=ingested.version, report=ingested.report)
    again = plan_training(spec=ingested.spec, version=ingested.version, report=ingested.report)
    assert plan.model_version == again.model_version
    other = ingested.spec.model_copy(
        update={"training": ingested.spec.training.model_copy(update={"num_boost_round": 7})}
    )
    assert (
        plan_training(spec=other, version=ingested.version, report=ingested.report).model_version
        != plan.model_version
    )
    failed = ingested.report.model_copy(update={"passed": False})
    with pytest.raises(ValidationFailed, match="did not pass validation"):
        plan_training(spec=ingested.spec, version=ingested.version, report=failed)


def test_evaluate_fits_the_task() -> None:
    y = np.array([0, 1, 1, 0])
    binary = evaluate("binary", y, np.array([0.1, 0.9, 0.8, 0.3]))
    assert binary["roc_auc"] == 1.0 and binary["accuracy"] == 1.0
    multi = evaluate("multiclass", np.array([0, 1, 2]), np.full((3, 3), 0.1) + np.eye(3) * 0.7)
    assert multi["accuracy"] == 1.0 and set(multi) == {"logloss", "accuracy", "f1_macro"}
    reg = evaluate("regression", np.array([1.0, 2.0]), np.array([1.0, 4.0]))
    assert reg["mae"] == 1.0 and reg["rmse"] == pytest.approx(np.sqrt(2))
    with pytest.raises(TrainingError, match="single class"):
        evaluate("binary", np.array([1, 1]), np.array([0.2, 0.9]))


def test_distributed_training_matches_single_node(ingested, dask_client) -> None:
    """xgboost.dask on two worker processes ≈ xgboost.train on one node, same data and params."""
    import xgboost

    plan = plan_training(spec=ingested.spec, version=ingested.version, report=ingested.report)
    trained = train_distributed(
        dask_client,
        uris=plan.partition_uris,
        layout=plan.layout,
        params=plan.params,
        num_boost_round=60,
        early_stopping_rounds=None,
    )
    assert trained.workers == 2
    assert trained.rows["train"] + trained.rows["validation"] + trained.rows["test"] == 6000
    frame = pd.concat(
        [prepare_frame(pd.read_parquet(u), plan.layout) for u in plan.partition_uris],
        ignore_index=True,
    )

    def rows(code: int) -> pd.DataFrame:
        return frame[frame[SPLIT_COLUMN] == code]

    assert len(rows(2)) == trained.rows["test"]
    train = rows(0)
    booster = xgboost.train(
        plan.params,
        xgboost.DMatrix(train[plan.layout.features], train[LABEL_COLUMN], enable_categorical=True),
        num_boost_round=60,
    )
    test = rows(2)
    single = evaluate(
        "binary",
        test[LABEL_COLUMN].to_numpy(),
        booster.predict(xgboost.DMatrix(test[plan.layout.features], enable_categorical=True)),
    )
    assert trained.metrics["roc_auc"] > 0.8
    assert trained.metrics["roc_auc"] == pytest.approx(single["roc_auc"], abs=0.01)
    assert trained.metrics["logloss"] == pytest.approx(single["logloss"], abs=0.02)
    # SHAP importance, computed in pieces on the workers, is the mean |contribution| over
    # the test rows (fewer than the sample size here, so all of them).
    assert trained.evaluation is not None and trained.evaluation.shap_rows == len(test)
    contributions = trained.booster.predict(
        xgboost.DMatrix(test[plan.layout.features], enable_categorical=True), pred_contribs=True
    )
    want = np.abs(contributions).mean(axis=0)[:-1]
    got = [trained.evaluation.shap[f] for f in plan.layout.features]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_integer_classes_read_back_as_floats_keep_their_labels() -> None:
    # An int target with nulls comes back from Parquet as float64: 1.0 must still be class "1".
    frame = pd.DataFrame(
        {"id": ["a", "b", "c", "d"], "n": [1, 2, 3, 4], "y": [0.0, 1.0, None, 2.0]}
    )
    layout = _layout(
        task="multiclass",
        features=["n"],
        feature_types={"n": "int"},
        categories={},
        classes=["0", "1", "2"],
    )
    assert prepare_frame(frame, layout)[LABEL_COLUMN].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("task", "target", "key", "metric", "floor"),
    [
        ("regression", "monthly_charges", "customer_id", "r2", 0.8),
        ("multiclass", "contract", None, "accuracy", 0.6),  # keyless: split by whole-row hash
    ],
)
def test_distributed_training_for_other_tasks(
    ingested, dask_client, task: str, target: str, key: str | None, metric: str, floor: float
) -> None:
    spec = ingested.spec.model_copy(update={"task": task, "target": target, "key": key})
    plan = plan_training(spec=spec, version=ingested.version, report=ingested.report)
    if task == "multiclass":
        assert plan.layout.classes == ["month-to-month", "one-year", "two-year"]
        assert plan.params["num_class"] == 3
    trained = train_distributed(
        dask_client,
        uris=plan.partition_uris,
        layout=plan.layout,
        params=plan.params,
        num_boost_round=40,
        early_stopping_rounds=5,
    )
    assert trained.metrics[metric] > floor
    assert sum(trained.rows.values()) == 6000
    # One importance per feature (averaged over classes for multiclass), from every test row.
    assert trained.evaluation is not None
    shap = trained.evaluation.shap
    assert (
        list(shap) == plan.layout.features and trained.evaluation.shap_rows == trained.rows["test"]
    )
    assert all(np.isfinite(v) and v >= 0 for v in shap.values()) and max(shap.values()) > 0


def test_warm_start_continues_only_a_comparable_champion_on_added_partitions(ingested) -> None:
    from tasks.records import ModelMetadata, WarmStart
    from tasks.spec import WarmStartSpec
    from tasks.train.plan import warm_start_plan

    spec = ingested.spec.model_copy(
        update={
            "training": ingested.spec.training.model_copy(
                update={"warm_start": WarmStartSpec(max_new_fraction=0.5)}
            )
        }
    )
    plan = plan_training(spec=spec, version=ingested.version, report=ingested.report)
    rows = {p.uri: p.rows for p in ingested.version.partitions}
    *old, new = sorted(rows)
    total_old = sum(rows[u] for u in old)
    champion = ModelMetadata(
        model_name=spec.name,
        version="champ",
        layout=plan.layout,
        params=plan.params,
        num_boost_round=200,
        early_stopping_rounds=20,
        best_iteration=41,
        best_score=None,
        metric="roc_auc",
        direction="maximize",
        metrics={"roc_auc": 0.9},
        rows={"train": total_old - 2, "validation": 1, "test": 1},
        eval_history={},
        dataset=spec.name,
        dataset_version="dv0",
        partitions=old,
        spec_hash="s",
        training_hash=spec.training_hash(),
        package_version="0",
        xgboost_version="3",
        workers=1,
        timings={},
    )

    def decide(champion: ModelMetadata, fraction: float = 1.0) -> WarmStart | None:
        settings = WarmStartSpec(max_new_fraction=fraction)
        training = spec.training.model_copy(update={"warm_start": settings})
        return warm_start_plan(
            spec.model_copy(update={"training": training}),
            layout=plan.layout,
            rows_by_uri=rows,
            champion=champion,
        )

    warm = decide(champion)
    assert warm is not None and warm.base_version == warm.full_version == "champ"
    assert warm.new_partitions == [new] and warm.new_rows == rows[new]
    assert warm.base_rounds == 42 and warm.rounds >= 10
    assert warm.rows_since_full == rows[new] and warm.full_rows == total_old
    # Too many rows since the last full training (counted along the chain): start over.
    assert decide(champion, fraction=(rows[new] - 1) / total_old) is None
    gone = champion.model_copy(update={"partitions": [*old, "file:///lake/gone.parquet"]})
    assert decide(gone) is None  # a partition it learned from is no longer accepted
    # A warm-started champion counts the rows added before it towards the limit.
    chained = champion.model_copy(update={"warm_start": warm, "partitions": old[:-1]})
    again = decide(chained)
    assert again is not None and again.full_version == "champ"
    assert again.rows_since_full == warm.rows_since_full + again.new_rows
    # Other training settings or another layout: not comparable.
    assert decide(champion.model_copy(update={"training_hash": "other"})) is None
    other_layout = plan.layout.model_copy(update={"features": plan.layout.features[:-1]})
    assert decide(champion.model_copy(update={"layout": other_layout})) is None
    assert decide(champion.model_copy(update={"partitions": sorted(rows)})) is None  # none new
    # Planned from the spec: the warm start is part of the model's identity.
    planned = plan_training(
        spec=spec, version=ingested.version, report=ingested.report, champion=champion
    )
    assert planned.warm_start is not None and planned.model_version != plan.model_version
    off = plan_training(
        spec=ingested.spec, version=ingested.version, report=ingested.report, champion=champion
    )
    assert off.warm_start is None and off.model_version == plan.model_version


def test_the_champions_kept_test_predictions_are_used_not_made_again(ingested, dask_client) -> None:
    """The candidate's test rows come back by partition, labels and predictions (to be kept
    with it); the champion's drawn beside it are taken from ``compare_predictions`` where
    they came with the labels of the rows gathered now, and predicted on the cluster
    elsewhere."""
    from tasks.train.predictions import Kept

    plan = plan_training(spec=ingested.spec, version=ingested.version, report=ingested.report)

    def train(**kwargs):  # type: ignore[no-untyped-def]
        return train_distributed(
            dask_client,
            uris=plan.partition_uris,
            layout=plan.layout,
            params=plan.params,
            num_boost_round=20,
            early_stopping_rounds=None,
            **kwargs,
        )

    champion = train()
    kept = champion.test_predictions
    # Kept by partition: together they are every test row, in the partitions' order.
    assert list(kept) == plan.partition_uris
    assert sum(len(k.labels) for k in kept.values()) == champion.rows["test"]
    booster = champion.booster
    # The champion's own predictions: the same curves as predicting again.
    made_again = train(compare=("champ", booster))
    reused = train(compare=("champ", booster), compare_predictions=kept)
    assert made_again.evaluation is not None and reused.evaluation is not None
    assert reused.evaluation.models[1] == made_again.evaluation.models[1]
    assert reused.evaluation.models[1].metrics == champion.metrics
    # Predictions that are not the champion's show that they were taken, not made again;
    # ones kept with other labels (other rows) are not taken.
    first, second, *rest = plan.partition_uris
    altered = {
        first: kept[first]._replace(predictions=np.full(len(kept[first].labels), 0.5, "float32")),
        second: Kept(1 - kept[second].labels, np.full(len(kept[second].labels), 0.5, "float32")),
    }
    mixed = train(compare=("champ", booster), compare_predictions=altered)
    assert mixed.evaluation is not None
    y_test = np.concatenate([kept[u].labels for u in plan.partition_uris])
    expected = np.concatenate(
        [altered[first].predictions, *(kept[u].predictions for u in [second, *rest])]
    )
    assert mixed.evaluation.models[1].metrics == evaluate("binary", y_test, expected)
