"""A model's training report: learning curves and feature importance as a self-contained page.

Plain HTML with inline SVG: it opens in any browser from the lake (no plotting library, no
script, no network), and the run links to it with a Prefect link artifact. Written to
``<lake>/runs/reports/<model>/<version>/training.html``.
"""

from __future__ import annotations

import html
import math

from prefect import task

from blocks.registry import ModelRegistry
from tasks.artifacts import artifact_key, publish_link
from tasks.lake import Lake
from tasks.models import ModelCandidate, ModelMetadata
from tasks.retries import IO_RETRIES

WIDTH, HEIGHT, PAD = 640, 280, 48
COLORS = {"train": "#1f77b4", "validation": "#ff7f0e"}


def curves_svg(history: dict[str, dict[str, list[float]]], metric: str) -> str:
    """One polyline per evaluation set (train, validation) of ``metric`` per boosting round."""
    series = {name: values[metric] for name, values in history.items() if values.get(metric)}
    if not series:
        return f"<p>No evaluation history for {html.escape(metric)}.</p>"
    rounds = max(len(v) for v in series.values())
    low = min(min(v) for v in series.values())
    high = max(max(v) for v in series.values())
    span = (high - low) or 1.0

    def x(i: int) -> float:
        return PAD + (WIDTH - 2 * PAD) * (i / max(rounds - 1, 1))

    def y(v: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * ((v - low) / span)

    lines = []
    for n, (name, values) in enumerate(sorted(series.items())):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        color = COLORS.get(name, "#2ca02c")
        lines.append(
            f'<polyline data-series="{html.escape(name)}" fill="none" stroke="{color}" '
            f'stroke-width="2" points="{points}"/>'
            f'<text x="{WIDTH - PAD - 90}" y="{PAD + 16 * n}" fill="{color}">'
            f"{html.escape(name)}</text>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{HEIGHT}" '
        f'aria-label="{html.escape(metric)} per round">'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#888"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>'
        f'<text x="{PAD}" y="{HEIGHT - PAD + 18}">round 1</text>'
        f'<text x="{WIDTH - PAD - 60}" y="{HEIGHT - PAD + 18}">round {rounds}</text>'
        f'<text x="4" y="{PAD}">{high:.4g}</text>'
        f'<text x="4" y="{HEIGHT - PAD}">{low:.4g}</text>'
        f'<text x="{WIDTH / 2 - 40}" y="20">{html.escape(metric)}</text>'
        + "".join(lines)
        + "</svg>"
    )


def importance_svg(importance: dict[str, float], top: int = 15) -> str:
    """Horizontal bars of the ``top`` features by gain."""
    ranked = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:top]
    if not ranked:
        return "<p>The model has no feature importance (no splits).</p>"
    best = ranked[0][1] or 1.0
    row, label = 22, 170
    bars = []
    for i, (name, gain) in enumerate(ranked):
        width = max(1.0, (WIDTH - label - 80) * gain / best) if math.isfinite(gain) else 1.0
        top_y = 10 + i * row
        bars.append(
            f'<text x="4" y="{top_y + 14}">{html.escape(name)}</text>'
            f'<rect data-feature="{html.escape(name)}" x="{label}" y="{top_y}" '
            f'width="{width:.1f}" height="{row - 6}" fill="#1f77b4"/>'
            f'<text x="{label + width + 6:.1f}" y="{top_y + 14}">{gain:.4g}</text>'
        )
    height = 20 + len(ranked) * row
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" '
        f'height="{height}" aria-label="feature importance (gain)">' + "".join(bars) + "</svg>"
    )


def training_report(metadata: ModelMetadata, importance: dict[str, float]) -> str:
    """The whole page."""
    metric = metadata.metric
    # The curves use the metric XGBoost evaluated each round (the spec's eval_metric).
    evaluated = sorted({m for values in metadata.eval_history.values() for m in values})
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.6f}</td></tr>"
        for k, v in sorted(metadata.metrics.items())
    )
    curves = "".join(
        f"<h2>Learning curve: {html.escape(m)}</h2>{curves_svg(metadata.eval_history, m)}"
        for m in evaluated
    )
    title = f"Training report: {metadata.model_name} @ {metadata.version}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:720px;margin:2em auto}"
        "td{padding:2px 12px}svg text{font-size:12px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>Dataset version {html.escape(metadata.dataset_version)}; best iteration "
        f"{metadata.best_iteration} of {metadata.num_boost_round}; {metadata.workers} "
        f"worker(s); promotion metric {html.escape(metric)}.</p>"
        f"<table><tr><th>metric</th><th>test</th></tr>{rows}</table>"
        f"{curves}<h2>Feature importance (gain)</h2>{importance_svg(importance)}"
        "</body></html>"
    )


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


def report_path(lake: Lake, model: str, version: str) -> str:
    return lake.path("runs", "reports", model, version, "training.html")


@task(name="write-training-report", **IO_RETRIES)
def write_training_report_task(*, lake: str, candidate: ModelCandidate) -> str:
    """Write the training report into the lake, link it from the run; its URI."""
    from tasks.promote import feature_importance

    registry = ModelRegistry(lake=lake)
    metadata = registry.metadata(candidate.model_name, candidate.version)
    page = training_report(metadata, feature_importance(registry, metadata))
    store = Lake(lake)
    path = report_path(store, candidate.model_name, candidate.version)
    store.write_bytes(path, page.encode())
    uri = store.url_of(path)
    publish_link(
        key=artifact_key("training-report", candidate.model_name),
        link=uri,
        description=f"Learning curves and feature importance of {candidate.model_name}"
        f"@{candidate.version}",
    )
    return uri
