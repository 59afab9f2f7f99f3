"""Profiles: the compact, mergeable distribution of a model's inputs and predictions.

A model's training profile is stored with it (``profile.json``); a scoring run builds the
same profile of the rows it scored, on the same bins, and drift is the difference
(``tasks/score/drift.py``). Numeric features are binned at quantiles of the training rows,
categories counted. Every partition is profiled where it is held (a Dask worker) and the
small per-partition profiles are merged by adding counts: no rows ever reach the process
that merges them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from distributed import Client

from tasks.records import DataProfile, FeatureLayout, FeatureProfile
from tasks.train.features import SPLIT_COLUMN

if TYPE_CHECKING:
    import dask.dataframe as dd

# Quantiles each partition reports for the bin edges: the merged edges are exact to about
# 1/QUANTILE_GRID of the rows, whatever the number of partitions.
QUANTILE_GRID = 256
# Values per partition and column the quantiles are taken from.
QUANTILE_SAMPLE = 50_000
# A numeric feature with at most this many distinct values in a partition reports them.
DISTINCT_LIMIT = 64
PREDICTION = "prediction"


def numeric_profile(values: np.ndarray, edges: Sequence[float]) -> FeatureProfile:
    """Counts of ``values`` in the bins of ``edges``; NaN counts as null."""
    values = np.asarray(values)
    if values.dtype.kind != "f":
        values = values.astype("float64")
    missing = np.isnan(values)
    present = values[~missing]
    # A value's bin is the number of edges at or below it. For a few edges, counting the
    # values at or above each edge is several times faster than a binary search per value.
    if len(edges) <= 16:
        at_or_above = np.array([np.count_nonzero(present >= e) for e in edges], dtype=np.int64)
    else:
        bins = np.searchsorted(np.asarray(edges, dtype=values.dtype), present, side="right")
        at_or_above = len(present) - np.cumsum(np.bincount(bins, minlength=len(edges) + 1))[:-1]
    counts = -np.diff(np.concatenate([[len(present)], at_or_above, [0]]))
    return FeatureProfile(
        kind="numeric",
        rows=len(values),
        nulls=int(missing.sum()),
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
    )


def categorical_profile(values: pd.Series) -> FeatureProfile:
    """A count per category that occurs (as text); missing values count as null."""
    present = values.dropna()
    if isinstance(values.dtype, pd.CategoricalDtype):
        # Counted on the codes; a Categorical also lists its categories that do not occur.
        counts = present.value_counts()
        counts = counts[counts > 0]
    else:
        counts = present.astype("object").astype(str).value_counts()
    return FeatureProfile(
        kind="categorical",
        rows=len(values),
        nulls=len(values) - len(present),
        categories={str(k): int(v) for k, v in counts.items()},
    )


def numeric_features(layout: FeatureLayout) -> list[str]:
    return [f for f in layout.features if layout.feature_types[f] != "category"]


def frame_profile(
    inputs: pd.DataFrame,
    layout: FeatureLayout,
    edges: Mapping[str, Sequence[float]],
    *,
    raw: pd.DataFrame | None = None,
    rows_of: str = "train",
) -> DataProfile:
    """The profile of model inputs (``model_inputs``/``prepare_frame``) on ``edges``.

    Categories are counted in ``raw`` when given: the model's encoding turns a category it
    never saw into a missing value, and drift must see it.
    """
    features: dict[str, FeatureProfile] = {}
    for name in layout.features:
        if layout.feature_types[name] == "category":
            features[name] = categorical_profile((raw if raw is not None else inputs)[name])
        else:
            features[name] = numeric_profile(inputs[name].to_numpy(), edges.get(name, []))
    return DataProfile(rows=len(inputs), features=features, rows_of=rows_of)


def prediction_values(layout: FeatureLayout, predictions: np.ndarray) -> np.ndarray | pd.Series:
    """What the prediction profile bins: the positive-class probability (binary), the
    predicted class (multiclass, by name) or the predicted value (regression)."""
    if layout.task == "multiclass":
        classes = np.asarray(layout.classes or [], dtype=object)
        return pd.Series(classes[np.asarray(predictions).argmax(axis=1)])
    return np.asarray(predictions, dtype="float64").reshape(-1)


def prediction_profile(
    layout: FeatureLayout, predictions: np.ndarray, edges: Sequence[float]
) -> FeatureProfile:
    values = prediction_values(layout, predictions)
    if isinstance(values, pd.Series):
        return categorical_profile(values)
    return numeric_profile(values, edges)


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """Inner bin edges at the ``bins``-quantiles of ``values`` (NaN ignored). A feature with
    at most ``bins`` distinct values (flags, counts, codes) gets one bin per value instead."""
    return merged_edges([partition_quantiles(pd.DataFrame({"v": values}), ["v"])], bins)["v"]


def partition_quantiles(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, Any]:
    """Each column's count of values, its quantiles on a fine grid and, when few, its
    distinct values: what ``merged_edges`` combines across partitions."""
    grid = np.linspace(0.0, 1.0, QUANTILE_GRID + 1)
    out: dict[str, Any] = {}
    for name in columns:
        values = frame[name].to_numpy(dtype="float64")
        present = values[~np.isnan(values)]
        # Quantiles of an even sample (rows are in hash order already): edges within a
        # fraction of a bin of the exact ones, at a fraction of the cost of sorting all.
        sample = present[:: max(1, len(present) // QUANTILE_SAMPLE)]
        distinct = pd.unique(sample)
        if len(distinct) <= DISTINCT_LIMIT:
            distinct = pd.unique(present)  # a hash pass: no sort
        out[name] = {
            "count": len(present),
            "quantiles": np.quantile(sample, grid).tolist() if len(sample) else [],
            "distinct": sorted(distinct.tolist()) if len(distinct) <= DISTINCT_LIMIT else None,
        }
    return out


def merged_edges(parts: Sequence[Mapping[str, Any]], bins: int) -> dict[str, list[float]]:
    """Bin edges from the partitions' summaries: each quantile point stands for its share of
    its partition's values, and the edges are the weighted quantiles of all points (or the
    distinct values themselves, when there are at most ``bins`` of them)."""
    edges: dict[str, list[float]] = {}
    columns = {name for part in parts for name in part}
    targets = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    for name in sorted(columns):
        summaries = [part[name] for part in parts if name in part and part[name]["count"]]
        if not summaries:
            edges[name] = []
            continue
        if all(s["distinct"] is not None for s in summaries):
            distinct = sorted({float(v) for s in summaries for v in s["distinct"]})
            if len(distinct) <= bins:
                # Binned with side="right": each value is alone in the bin it opens.
                edges[name] = distinct
                continue
        points = np.concatenate([s["quantiles"] for s in summaries])
        weights = np.concatenate(
            [np.full(len(s["quantiles"]), s["count"] / len(s["quantiles"])) for s in summaries]
        )
        order = np.argsort(points, kind="stable")
        cumulative = np.cumsum(weights[order])
        cumulative /= cumulative[-1]
        picked = points[order][np.searchsorted(cumulative, targets, side="left")]
        edges[name] = sorted({float(v) for v in picked})
    return edges


def merge_feature(a: FeatureProfile, b: FeatureProfile) -> FeatureProfile:
    """Two profiles of one column on the same bins, added."""
    if a.kind != b.kind or a.edges != b.edges:
        raise ValueError("profiles on different bins cannot be merged")
    categories = dict(a.categories)
    for name, count in b.categories.items():
        categories[name] = categories.get(name, 0) + count
    counts = [x + y for x, y in zip(a.counts, b.counts, strict=True)] if a.counts else b.counts
    return FeatureProfile(
        kind=a.kind,
        rows=a.rows + b.rows,
        nulls=a.nulls + b.nulls,
        edges=a.edges,
        counts=counts,
        categories=categories,
    )


def merge_profiles(profiles: Sequence[DataProfile], *, rows_of: str) -> DataProfile:
    """Profiles of disjoint rows on the same bins, added (an empty sequence: no rows)."""
    features: dict[str, FeatureProfile] = {}
    prediction: FeatureProfile | None = None
    for profile in profiles:
        for name, feature in profile.features.items():
            features[name] = merge_feature(features[name], feature) if name in features else feature
        if profile.prediction is not None:
            prediction = (
                profile.prediction
                if prediction is None
                else merge_feature(prediction, profile.prediction)
            )
    return DataProfile(
        rows=sum(p.rows for p in profiles),
        features=features,
        prediction=prediction,
        rows_of=rows_of,
    )


def training_profile(
    client: Client,
    prepared: dd.DataFrame,
    layout: FeatureLayout,
    *,
    split_code: int,
    rows_of: str,
    test_predictions: np.ndarray,
    bins: int,
) -> DataProfile:
    """The profile of the rows of one split of a prepared frame held on the cluster, plus
    the distribution of the model's predictions on its test rows (already gathered)."""
    import dask

    rows = prepared[prepared[SPLIT_COLUMN] == split_code]
    numeric = numeric_features(layout)
    parts = rows.to_delayed()
    summaries = client.compute([dask.delayed(partition_quantiles)(p, numeric) for p in parts])
    edges = merged_edges(client.gather(summaries), bins)
    profiles = client.compute(
        [dask.delayed(frame_profile)(p, layout, edges, rows_of=rows_of) for p in parts]
    )
    merged = merge_profiles(client.gather(profiles), rows_of=rows_of)
    values = prediction_values(layout, test_predictions)
    prediction_edges = [] if isinstance(values, pd.Series) else quantile_edges(values, bins)
    return merged.model_copy(
        update={"prediction": prediction_profile(layout, test_predictions, prediction_edges)}
    )
