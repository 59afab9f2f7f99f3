"""A model's training report and summary.

The report is a self-contained HTML page drawn with Bokeh (installed with Dask's
diagnostics): learning curves per evaluated metric with the best round marked, and the
features ranked by gain, each with axes, ticks, legends and hover values. BokehJS is inlined,
so the page opens from the lake in any browser with no network. Written to
``<lake>/runs/reports/<model>/<version>/training.html``; the run links to it.
"""

from __future__ import annotations

import html
import math
from typing import Any

from blocks.registry import ModelRegistry
from tasks.lake import Lake
from tasks.records import ModelCandidate, ModelMetadata
from tasks.train.metrics import gain_importance

# Bokeh takes a second to import: only the report's functions import it.

History = dict[str, dict[str, list[float]]]
COLORS = {"train": "#1f77b4", "validation": "#ff7f0e"}
# Features shown in the importance chart (the model card lists them all).
TOP_FEATURES = 20


def curve_source_name(metric: str, series: str) -> str:
    """The name of a learning curve's data in the page (tests and tools find it by name)."""
    return f"curve:{metric}:{series}"


IMPORTANCE_SOURCE = "importance:gain"


def learning_curve(history: History, metric: str, *, best_iteration: int | None) -> Any:
    """One line per evaluation set (train, validation) of ``metric`` per boosting round."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.models.annotations import Span
    from bokeh.plotting import figure

    plot = figure(
        title=f"Learning curve: {metric}",
        x_axis_label="boosting round",
        y_axis_label=metric,
        width=720,
        height=320,
        tools="pan,box_zoom,wheel_zoom,reset,save",
    )
    for name, values in sorted(history.items()):
        scores = values.get(metric)
        if not scores:
            continue
        source = ColumnDataSource(
            data={"round": list(range(1, len(scores) + 1)), "value": [float(v) for v in scores]},
            name=curve_source_name(metric, name),
        )
        line = plot.line(
            "round",
            "value",
            source=source,
            legend_label=name,
            line_width=2,
            color=COLORS.get(name, "#2ca02c"),
        )
        plot.add_tools(
            HoverTool(
                renderers=[line], tooltips=[("set", name), ("round", "@round"), (metric, "@value")]
            )
        )
    if best_iteration is not None:
        # Rounds are shown from 1; the best iteration counts from 0.
        plot.add_layout(
            Span(
                location=best_iteration + 1,
                dimension="height",
                line_dash="dashed",
                line_color="#555",
            )
        )
    plot.legend.location = "top_right"
    return plot


def importance_chart(importance: dict[str, float], *, top: int = TOP_FEATURES) -> Any:
    """Horizontal bars of the ``top`` features by gain, largest on top."""
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
    from bokeh.plotting import figure

    ranked = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:top]
    names = [name for name, _ in reversed(ranked)]
    gains = [gain if math.isfinite(gain) else 0.0 for _, gain in reversed(ranked)]
    source = ColumnDataSource(data={"feature": names, "gain": gains}, name=IMPORTANCE_SOURCE)
    plot = figure(
        title="Feature importance (total gain per split, averaged)",
        y_range=FactorRange(factors=names),
        x_range=Range1d(start=0, end=max(gains, default=1.0) * 1.05 or 1.0),
        x_axis_label="gain",
        width=720,
        height=max(160, 28 * len(names) + 80),
        tools="save",
    )
    plot.hbar(y="feature", right="gain", height=0.7, source=source, color="#1f77b4")
    plot.add_tools(HoverTool(tooltips=[("feature", "@feature"), ("gain", "@gain{0.000}")]))
    return plot


def training_report(metadata: ModelMetadata, importance: dict[str, float]) -> str:
    """The whole page, with BokehJS inlined (no network needed to view it)."""
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models.widgets import Div
    from bokeh.resources import INLINE

    title = f"Training report: {metadata.model_name} @ {metadata.version}"
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.6f}</td></tr>"
        for k, v in sorted(metadata.metrics.items())
    )
    header = Div(
        text=f"<h1>{html.escape(title)}</h1>"
        f"<p>Dataset version {html.escape(metadata.dataset_version)}; best iteration "
        f"{metadata.best_iteration} of {metadata.num_boost_round} (dashed line); "
        f"{metadata.workers} worker(s); promotion metric {html.escape(metadata.metric)}.</p>"
        f"<table><tr><th>metric</th><th>test</th></tr>{rows}</table>",
        width=720,
    )
    # The curves use the metrics XGBoost evaluated each round (the spec's eval_metric).
    evaluated = sorted({m for values in metadata.eval_history.values() for m in values})
    best = metadata.best_iteration if metadata.early_stopping_rounds else None
    curves = [learning_curve(metadata.eval_history, m, best_iteration=best) for m in evaluated]
    if not curves:
        curves = [Div(text="<p>No evaluation history.</p>")]
    bars = (
        importance_chart(importance)
        if importance
        else Div(text="<p>The model has no feature importance (no splits).</p>")
    )
    page: str = file_html(column(header, *curves, bars), resources=INLINE, title=title)
    return page


def history_rows(history: dict[str, dict[str, list[float]]], *, samples: int = 10) -> list[str]:
    """Markdown table rows of the eval history at ~``samples`` evenly spaced rounds."""
    columns = [(data, metric) for data, metrics in history.items() for metric in metrics]
    if not columns:
        return []
    rounds = max(len(history[d][m]) for d, m in columns)
    step = max(1, math.ceil(rounds / samples))
    picked = sorted({*range(0, rounds, step), rounds - 1})
    header = "| round | " + " | ".join(f"{d} {m}" for d, m in columns) + " |"
    rule = "| --- " * (len(columns) + 1) + "|"

    def cell(data: str, metric: str, i: int) -> str:
        values = history[data][metric]
        return f"{values[i]:.6f}" if i < len(values) else ""

    body = [f"| {i + 1} | " + " | ".join(cell(d, m, i) for d, m in columns) + " |" for i in picked]
    return [header, rule, *body]


def training_summary(metadata: ModelMetadata, *, reused: bool) -> str:
    """Markdown for the training-summary artifact: what training did and how long it took."""
    how = (
        "Reused: a version for the same data and spec was already registered."
        if reused
        else "Trained in this run"
        + (
            f", resumed from the checkpoint at round {metadata.resumed_from_round}."
            if metadata.resumed_from_round
            else "."
        )
    )
    trained_rounds = len(next(iter(next(iter(metadata.eval_history.values()), {}).values()), []))
    warm = metadata.warm_start
    base_rounds = warm.base_rounds if warm else 0
    if warm is not None:
        how += (
            f" Warm start: continued `{warm.base_version}` ({warm.base_rounds} trees) on "
            f"{len(warm.new_partitions)} new partition(s), {warm.new_rows:,} rows; "
            f"{warm.rows_since_full:,} rows added since the full training `{warm.full_version}`."
        )
    timings = ", ".join(
        f"{k.removesuffix('_seconds')} {v:.2f} s" for k, v in metadata.timings.items()
    )
    return "\n".join(
        [
            f"# Training: {metadata.model_name} @ {metadata.version}",
            "",
            how,
            "",
            f"- dataset `{metadata.dataset}` version `{metadata.dataset_version}`",
            f"- rows: {', '.join(f'{k} {v:,}' for k, v in metadata.rows.items())}",
            f"- rounds: {trained_rounds} of {metadata.num_boost_round - base_rounds}"
            f"{f' after the base {base_rounds}' if warm else ''} (early stopping "
            f"{metadata.early_stopping_rounds or 'off'}), best iteration "
            f"{metadata.best_iteration}",
            f"- workers: {metadata.workers}",
            f"- timings: {timings or 'n/a'}",
            "",
            "## Test metrics",
            "",
            "| metric | test |",
            "| --- | --- |",
            *[f"| {k} | {v:.6f} |" for k, v in sorted(metadata.metrics.items())],
            "",
            "## Evaluation history",
            "",
            *history_rows(metadata.eval_history),
        ]
    )


def feature_importance(registry: ModelRegistry, metadata: ModelMetadata) -> dict[str, float]:
    """The model's gain importance: recorded at registration, or (models registered before
    it was) read from the model itself."""
    if metadata.importance:
        return dict(metadata.importance)
    return gain_importance(registry.load_booster(metadata.model_name, metadata.version))


def training_report_path(lake: Lake, model: str, version: str) -> str:
    return lake.path("runs", "reports", model, version, "training.html")


def write_training_report(*, lake: str, candidate: ModelCandidate) -> str:
    """Write the candidate's training report into the lake; its URI.

    A model version never changes, so neither does its report: one written before (a run
    that reused the model) is kept, and the run loads neither XGBoost nor Bokeh.
    """
    store = Lake(lake)
    path = training_report_path(store, candidate.model_name, candidate.version)
    if not store.exists(path):
        registry = ModelRegistry(lake=lake)
        metadata = registry.metadata(candidate.model_name, candidate.version)
        page = training_report(metadata, feature_importance(registry, metadata))
        store.write_bytes(path, page.encode())
    return store.url_of(path)
