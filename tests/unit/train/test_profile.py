"""Profiles: bins at the training quantiles, counts that merge, on a real Dask cluster."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.records import FeatureLayout
from tasks.train.features import SPLIT_COLUMN
from tasks.train.profile import (
    categorical_profile,
    frame_profile,
    merge_profiles,
    merged_edges,
    numeric_profile,
    partition_quantiles,
    quantile_edges,
    training_profile,
)

pytestmark = pytest.mark.timeout(120)

LAYOUT = FeatureLayout(
    task="binary",
    target="y",
    key=None,
    features=["x", "c"],
    feature_types={"x": "float", "c": "category"},
    categories={"c": ["a", "b"]},
    classes=["0", "1"],
    split={"validation": 0.15, "test": 0.15, "salt": ""},
)


def test_numeric_bins_count_every_value_once_and_nulls_apart() -> None:
    profile = numeric_profile(np.array([0.0, 1.0, 1.0, 2.5, np.nan, 9.0]), [1.0, 2.0])
    # Below 1, [1, 2), from 2 up.
    assert profile.counts == [1, 2, 2]
    assert (profile.rows, profile.nulls) == (6, 1)
    assert profile.null_fraction == pytest.approx(1 / 6)


def test_categorical_profile_counts_only_what_occurs() -> None:
    values = pd.Series(pd.Categorical(["a", None, "a"], categories=["a", "b"]))
    profile = categorical_profile(values)
    assert profile.categories == {"a": 2}
    assert profile.nulls == 1


def test_a_feature_of_few_values_gets_a_bin_per_value() -> None:
    flags = np.array([0.0] * 90 + [1.0] * 10)
    assert quantile_edges(flags, 10) == [0.0, 1.0]
    assert numeric_profile(flags, [0.0, 1.0]).counts == [0, 90, 10]
    assert quantile_edges(np.array([np.nan, np.nan]), 10) == []
    # Many values, most of them equal: repeated quantiles collapse into one edge.
    skewed = np.r_[np.zeros(900), np.arange(1.0, 101.0)]
    edges = quantile_edges(skewed, 10)
    assert edges[0] == 0.0 and len(edges) == len(set(edges)) < 9


def test_edges_merged_from_partitions_match_the_quantiles_of_all_rows() -> None:
    rng = np.random.default_rng(0)
    parts = [pd.DataFrame({"x": rng.normal(i, 1.0 + i, 5_000 * (i + 1))}) for i in range(4)]
    merged = merged_edges([partition_quantiles(p, ["x"]) for p in parts], 10)["x"]
    exact = quantile_edges(pd.concat(parts)["x"].to_numpy(), 10)
    assert len(merged) == 9
    # Within a fraction of a decile's width of the exact edges.
    assert np.allclose(merged, exact, atol=0.1)


def test_profiles_of_disjoint_rows_merge_into_the_profile_of_all_rows() -> None:
    frame = pd.DataFrame(
        {"x": np.arange(100, dtype="float32"), "c": pd.Categorical(["a", "b"] * 50)}
    )
    edges = {"x": [25.0, 50.0, 75.0]}
    whole = frame_profile(frame, LAYOUT, edges)
    halves = [
        frame_profile(frame.iloc[:40], LAYOUT, edges),
        frame_profile(frame.iloc[40:], LAYOUT, edges),
    ]
    assert merge_profiles(halves, rows_of="train") == whole
    assert whole.features["x"].counts == [25, 25, 25, 25]
    assert whole.features["c"].categories == {"a": 50, "b": 50}


def test_raw_categories_are_counted_where_the_encoding_would_hide_them() -> None:
    raw = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "zz"]})
    encoded = pd.DataFrame(
        {"x": [1.0, 2.0], "c": pd.Categorical(["a", None], categories=["a", "b"])}
    )
    profile = frame_profile(encoded, LAYOUT, {"x": []}, raw=raw, rows_of="scored")
    assert profile.features["c"].categories == {"a": 1, "zz": 1}


def test_training_profile_is_computed_on_the_cluster(dask_client: Any) -> None:
    import dask.dataframe as dd

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=4000).astype("float32"),
            "c": pd.Categorical(rng.choice(["a", "b"], 4000), categories=["a", "b"]),
            SPLIT_COLUMN: rng.choice([0, 1, 2], 4000, p=[0.7, 0.15, 0.15]).astype("int8"),
        }
    )
    prepared = dd.from_pandas(frame, npartitions=4)
    predictions = rng.random(600)
    profile = training_profile(
        dask_client,
        prepared,
        LAYOUT,
        split_code=0,
        rows_of="train",
        test_predictions=predictions,
        bins=10,
    )
    train_rows = int((frame[SPLIT_COLUMN] == 0).sum())
    assert profile.rows == train_rows
    assert sum(profile.features["x"].counts) == train_rows
    assert sum(profile.features["c"].categories.values()) == train_rows
    # Deciles: each bin holds about a tenth of the rows.
    assert max(profile.features["x"].counts) < train_rows * 0.13
    assert profile.prediction is not None and sum(profile.prediction.counts) == 600
