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
from tasks.records import Evaluation, ModelCandidate, ModelCurves, ModelMetadata
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
SHAP_SOURCE = "importance:shap"


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


def ranked_bars(
    values: dict[str, float],
    *,
    column: str,
    source_name: str,
    title: str,
    x_label: str,
    color: str,
    width: int,
    top: int = TOP_FEATURES,
) -> Any:
    """Horizontal bars of the ``top`` features by ``values``, largest on top."""
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Range1d
    from bokeh.plotting import figure

    ranked = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:top]
    names = [name for name, _ in reversed(ranked)]
    shown = [value if math.isfinite(value) else 0.0 for _, value in reversed(ranked)]
    source = ColumnDataSource(data={"feature": names, column: shown}, name=source_name)
    plot = figure(
        title=title,
        y_range=FactorRange(factors=names),
        x_range=Range1d(start=0, end=max(shown, default=1.0) * 1.05 or 1.0),
        x_axis_label=x_label,
        width=width,
        height=max(160, 28 * len(names) + 80),
        tools="save",
    )
    plot.hbar(y="feature", right=column, height=0.7, source=source, color=color)
    plot.add_tools(HoverTool(tooltips=[("feature", "@feature"), (x_label, f"@{column}{{0.0000}}")]))
    return plot


def importance_chart(importance: dict[str, float], *, width: int = 720) -> Any:
    """The features by XGBoost's gain."""
    return ranked_bars(
        importance,
        column="gain",
        source_name=IMPORTANCE_SOURCE,
        title="Feature importance (total gain per split, averaged)",
        x_label="gain",
        color="#1f77b4",
        width=width,
    )


MODEL_COLORS = {"candidate": "#1f77b4", "champion": "#d62728"}


def evaluation_source_name(chart: str, role: str) -> str:
    """The name of an evaluation chart's data for one model (``eval:roc:candidate``)."""
    return f"eval:{chart}:{role}"


def _label(curves: ModelCurves, metric: str | None = None) -> str:
    value = curves.metrics.get(metric) if metric else None
    shown = f" {metric} {value:.4f}" if value is not None else ""
    return f"{curves.role} {curves.version[:8]}{shown}"


def _curve_chart(
    evaluation: Evaluation,
    chart: str,
    *,
    title: str,
    x_label: str,
    y_label: str,
    metric: str | None,
    diagonal: bool = False,
) -> Any:
    """Lines of one curve kind (roc, pr, calibration), one per model, same axes."""
    from bokeh.models import ColumnDataSource, HoverTool, Range1d
    from bokeh.plotting import figure

    plot = figure(
        title=title,
        x_axis_label=x_label,
        y_axis_label=y_label,
        width=480,
        height=400,
        x_range=Range1d(start=0, end=1),
        y_range=Range1d(start=0, end=1.02),
        tools="pan,box_zoom,wheel_zoom,reset,save",
    )
    if diagonal:
        plot.line([0, 1], [0, 1], line_dash="dotted", color="#888")
    for curves in evaluation.models:
        points = getattr(curves, chart)
        source = ColumnDataSource(
            data={"x": [p[0] for p in points], "y": [p[1] for p in points]},
            name=evaluation_source_name(chart, curves.role),
        )
        line = plot.line(
            "x",
            "y",
            source=source,
            line_width=2,
            color=MODEL_COLORS[curves.role],
            legend_label=_label(curves, metric),
        )
        if chart == "calibration":
            plot.scatter("x", "y", source=source, size=6, color=MODEL_COLORS[curves.role])
        plot.add_tools(
            HoverTool(renderers=[line], tooltips=[(x_label, "@x{0.000}"), (y_label, "@y{0.000}")])
        )
    plot.legend.location = "bottom_right"
    return plot


def confusion_chart(evaluation: Evaluation, curves: ModelCurves) -> Any:
    """A heat map of rows by true and predicted class, with the counts written in."""
    from bokeh.models import ColumnDataSource, FactorRange
    from bokeh.plotting import figure

    classes = evaluation.classes or []
    cells = [
        (actual, predicted, count)
        for actual, row in zip(classes, curves.confusion, strict=False)
        for predicted, count in zip(classes, row, strict=False)
    ]
    top = max((c for *_, c in cells), default=1) or 1
    source = ColumnDataSource(
        data={
            "actual": [a for a, _, _ in cells],
            "predicted": [p for _, p, _ in cells],
            "count": [c for *_, c in cells],
            "alpha": [0.1 + 0.9 * c / top for *_, c in cells],
        },
        name=evaluation_source_name("confusion", curves.role),
    )
    plot = figure(
        title=f"Confusion matrix: {_label(curves, 'accuracy')}",
        x_range=FactorRange(factors=classes),
        y_range=FactorRange(factors=list(reversed(classes))),
        x_axis_label="predicted class",
        y_axis_label="true class",
        width=480,
        height=400,
        tools="save",
    )
    plot.rect(
        "predicted",
        "actual",
        1,
        1,
        source=source,
        fill_color=MODEL_COLORS[curves.role],
        fill_alpha="alpha",
        line_color="white",
    )
    plot.text(
        "predicted",
        "actual",
        text="count",
        source=source,
        text_align="center",
        text_baseline="middle",
    )
    return plot


def residual_chart(evaluation: Evaluation) -> Any:
    """Residuals (true - predicted) against predictions, a sample of the test rows."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.models.annotations import Span
    from bokeh.plotting import figure

    plot = figure(
        title="Residuals against predictions (test rows)",
        x_axis_label="prediction",
        y_axis_label="true - predicted",
        width=720,
        height=400,
        tools="pan,box_zoom,wheel_zoom,reset,save",
    )
    for curves in evaluation.models:
        source = ColumnDataSource(
            data={"x": [p[0] for p in curves.residuals], "y": [p[1] for p in curves.residuals]},
            name=evaluation_source_name("residuals", curves.role),
        )
        dots = plot.scatter(
            "x",
            "y",
            source=source,
            size=4,
            alpha=0.5,
            color=MODEL_COLORS[curves.role],
            legend_label=_label(curves, "rmse"),
        )
        plot.add_tools(
            HoverTool(renderers=[dots], tooltips=[("prediction", "@x"), ("residual", "@y")])
        )
    plot.add_layout(Span(location=0, dimension="width", line_color="#555", line_dash="dashed"))
    return plot


def evaluation_charts(evaluation: Evaluation) -> list[Any]:
    """The plots people look for by task, the champion drawn beside the candidate."""
    from bokeh.layouts import row

    if evaluation.task == "binary":
        return [
            row(
                _curve_chart(
                    evaluation,
                    "roc",
                    title="ROC (test rows)",
                    x_label="false positive rate",
                    y_label="true positive rate",
                    metric="roc_auc",
                    diagonal=True,
                ),
                _curve_chart(
                    evaluation,
                    "pr",
                    title="Precision-recall (test rows)",
                    x_label="recall",
                    y_label="precision",
                    metric="f1",
                ),
            ),
            _curve_chart(
                evaluation,
                "calibration",
                title="Calibration (test rows, 10 bins)",
                x_label="mean predicted probability",
                y_label="fraction positive",
                metric="logloss",
                diagonal=True,
            ),
        ]
    if evaluation.task == "multiclass":
        return [row(*[confusion_chart(evaluation, c) for c in evaluation.models])]
    return [residual_chart(evaluation)]


def shap_chart(shap: dict[str, float], rows: int) -> Any:
    """The features by mean |SHAP contribution| on the test rows."""
    return ranked_bars(
        shap,
        column="shap",
        source_name=SHAP_SOURCE,
        title=f"Mean |SHAP contribution| ({rows:,} test rows)",
        x_label="mean |contribution| (margin)",
        color="#2ca02c",
        width=480,
    )


def training_report(
    metadata: ModelMetadata, importance: dict[str, float], evaluation: Evaluation | None = None
) -> str:
    """The whole page, with BokehJS inlined (no network needed to view it)."""
    from bokeh.embed import file_html
    from bokeh.layouts import column, row
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
    sections: list[Any] = [header, *curves]
    if evaluation is not None:
        compared = ", with the champion beside it" if len(evaluation.models) > 1 else ""
        sections.append(
            Div(text=f"<h2>Evaluation on {evaluation.test_rows:,} test rows{compared}</h2>")
        )
        sections += evaluation_charts(evaluation)
        if evaluation.shap and importance:
            bars = row(
                importance_chart(importance, width=480),
                shap_chart(evaluation.shap, evaluation.shap_rows),
            )
    page: str = file_html(column(*sections, bars), resources=INLINE, title=title)
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
        page = training_report(
            metadata,
            feature_importance(registry, metadata),
            registry.evaluation(candidate.model_name, candidate.version),
        )
        store.write_bytes(path, page.encode())
    return store.url_of(path)
