"""The drift report: each feature's training and scored distributions overlaid, drawn with
Bokeh like the training report (self-contained HTML, BokehJS inlined), at
``<lake>/runs/reports/<model>/<version>/drift-<run id>.html``."""

from __future__ import annotations

import html
import itertools
from typing import Any

from tasks.lake import Lake
from tasks.records import FeatureDrift, FeatureProfile, ScoringModel, ScoringResult

# Bokeh takes a second to import: only the report's functions import it.
COLORS = {"train": "#1f77b4", "scored": "#ff7f0e"}


def histogram_source_name(feature: str) -> str:
    """The name of a feature's data in the page (tests and tools find it by name)."""
    return f"drift:{feature}"


def bin_labels(profile: FeatureProfile) -> list[str]:
    """Readable names of a profile's bins: ``< e0``, ``e0 to e1``, ..., ``≥ eN``."""
    if profile.kind == "categorical":
        return sorted(profile.categories)
    edges = [f"{e:.4g}" for e in profile.edges]
    if not edges:
        return ["all"]
    return [
        f"< {edges[0]}",
        *[f"{a} to {b}" for a, b in itertools.pairwise(edges)],
        f"≥ {edges[-1]}",
    ]


def shares(
    train: FeatureProfile, scored: FeatureProfile
) -> tuple[list[str], list[float], list[float]]:
    """Bin labels and each side's share of its non-null rows (unseen categories included)."""
    labels = bin_labels(train)
    if train.kind == "categorical":
        labels = sorted(set(train.categories) | set(scored.categories))
        a = [train.categories.get(c, 0) for c in labels]
        b = [scored.categories.get(c, 0) for c in labels]
    else:
        a, b = list(train.counts), list(scored.counts)
    total_a, total_b = max(sum(a), 1), max(sum(b), 1)
    return labels, [x / total_a for x in a], [x / total_b for x in b]


def feature_chart(drift: FeatureDrift, train: FeatureProfile, scored: FeatureProfile) -> Any:
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool
    from bokeh.plotting import figure
    from bokeh.transform import dodge

    labels, a, b = shares(train, scored)
    source = ColumnDataSource(
        data={"bin": labels, "train": a, "scored": b}, name=histogram_source_name(drift.feature)
    )
    plot = figure(
        title=f"{drift.feature}: PSI {drift.psi:.3f} ({drift.verdict})",
        x_range=FactorRange(factors=labels),
        x_axis_label="bin" if train.kind == "numeric" else "category",
        y_axis_label="share of rows",
        width=720,
        height=300,
        tools="save",
    )
    for side, offset in (("train", -0.2), ("scored", 0.2)):
        plot.vbar(
            x=dodge("bin", offset, range=plot.x_range),
            top=side,
            width=0.38,
            source=source,
            color=COLORS[side],
            legend_label=side,
        )
    plot.xaxis.major_label_orientation = 0.8
    plot.add_tools(
        HoverTool(
            tooltips=[("bin", "@bin"), ("train", "@train{0.0%}"), ("scored", "@scored{0.0%}")]
        )
    )
    return plot


def drift_page(result: ScoringResult, model: ScoringModel) -> str:
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models.widgets import Div
    from bokeh.resources import INLINE

    drift = result.drift
    training, scored = model.profile, drift.scored_profile
    title = f"Drift report: {result.dataset} @ {result.model_version}"
    header = Div(
        text=f"<h1>{html.escape(title)}</h1><p>{result.rows_scored:,} scored rows against the "
        f"model's {html.escape(training.rows_of if training else '')} rows "
        f"({training.rows if training else 0:,}); verdict <b>{drift.status}</b> "
        f"(PSI warn {drift.thresholds.get('psi_warn')}, "
        f"alert {drift.thresholds.get('psi_alert')}).</p>",
        width=720,
    )
    charts: list[Any] = []
    if training is not None and scored is not None:
        ranked = sorted(drift.features, key=lambda f: -f.psi)
        for feature in ranked:
            charts.append(
                feature_chart(
                    feature, training.features[feature.feature], scored.features[feature.feature]
                )
            )
        if drift.prediction and training.prediction and scored.prediction:
            charts.insert(
                0, feature_chart(drift.prediction, training.prediction, scored.prediction)
            )
    page: str = file_html(column(header, *charts), resources=INLINE, title=title)
    return page


def drift_report_path(lake: Lake, result: ScoringResult) -> str:
    run_id = result.manifest_uri.rsplit("/", 1)[-1].removesuffix(".json")
    return lake.path(
        "runs", "reports", result.dataset, result.model_version, f"drift-{run_id}.html"
    )


def write_drift_report(result: ScoringResult, model: ScoringModel) -> str:
    """Write the run's drift report (once per run id: a re-run finds it); its URI."""
    lake = Lake(result.lake)
    path = drift_report_path(lake, result)
    if not lake.exists(path):
        lake.write_bytes(path, drift_page(result, model).encode())
    return lake.url_of(path)
