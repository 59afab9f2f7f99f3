"""What runs show: metrics text, progress display, summaries and tables, Data Docs pages."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deployments.progress import ProgressDisplay, render
from tasks.data_docs import build_site, site_files, site_path, write_data_docs
from tasks.models import PipelineResult, ValidationReport
from tasks.observability import ProgressUpdate, run_metrics, stage_table
from tasks.reports import history_rows, training_summary
from tasks.spec import ExpectationSpec
from tasks.validate import expectation_table, validate_frame

from .conftest import Ingested
from .test_registry import metadata

pytestmark = pytest.mark.timeout(120)


def pipeline_result() -> PipelineResult:
    return PipelineResult(
        dataset="customers",
        dataset_version="dv1",
        partitions_total=5,
        partitions_accepted=4,
        partitions_quarantined=1,
        new_partitions=2,
        rows=4000,
        model_version="mv1",
        model_reused=False,
        metric="roc_auc",
        metrics={"roc_auc": 0.9, "logloss": 0.3},
        promoted=True,
        champion="mv1",
        reason="no champion yet",
        lake="/lake",
        stage_seconds={"ingest": 1.5, "validate": 2.0, "train": 3.25, "promote": 0.5},
        split_rows={"train": 2800, "validation": 600, "test": 600},
    )


def test_run_metrics_are_prometheus_text_with_every_stage_and_count() -> None:
    text = run_metrics(pipeline_result(), finished_at=1_700_000_000.0).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    customers = ("dataset", "customers")
    assert samples[("mlops_stage_duration_seconds", (customers, ("stage", "train")))] == 3.25
    assert samples[("mlops_rows", (customers, ("kind", "accepted")))] == 4000
    assert samples[("mlops_rows", (customers, ("kind", "test")))] == 600
    assert samples[("mlops_partitions", (customers, ("state", "quarantined")))] == 1
    assert samples[("mlops_model_metric", (customers, ("metric", "roc_auc")))] == 0.9
    assert samples[("mlops_promoted", (customers,))] == 1
    assert samples[("mlops_last_run_timestamp_seconds", (customers,))] == 1_700_000_000.0
    assert [row["stage"] for row in stage_table(pipeline_result())] == [
        "ingest",
        "validate",
        "train",
        "promote",
    ]


def test_summary_shows_stage_times() -> None:
    assert "stages    ingest 1.5 s, validate 2.0 s, train 3.2 s, promote 0.5 s" in (
        pipeline_result().summary()
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_display_prints_quarter_milestones_without_a_terminal() -> None:
    out = io.StringIO()
    display = ProgressDisplay(out)
    for done in range(0, 101):
        display(ProgressUpdate("train", done, 100, "rounds"))
    display(ProgressUpdate("ingest", 0, 0, "files"))
    lines = out.getvalue().splitlines()
    assert [re.search(r"(\d+)/100", line).group(1) for line in lines[:-1]] == [  # type: ignore[union-attr]
        "0",
        "25",
        "50",
        "75",
        "100",
    ]
    assert lines[-1].startswith("progress  ingest") and "(100%)" in lines[-1]


def test_progress_display_redraws_one_line_per_stage_on_a_terminal() -> None:
    out = Terminal()
    display = ProgressDisplay(out)
    display(ProgressUpdate("validate", 1, 4, "partitions"))
    display(ProgressUpdate("validate", 4, 4, "partitions", "done"))
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 2 and text.endswith("done\n")
    assert render(ProgressUpdate("validate", 1, 4, "partitions")) == (
        "progress  validate [######------------------] 1/4 partitions (25%)"
    )


def test_training_summary_shows_rounds_history_timings_and_workers() -> None:
    meta = metadata("v1").model_copy(
        update={
            "num_boost_round": 50,
            "early_stopping_rounds": 5,
            "best_iteration": 31,
            "workers": 3,
            "timings": {"load_seconds": 1.0, "train_seconds": 2.5},
            "resumed_from_round": 20,
            "eval_history": {
                "train": {"logloss": [1.0 - i / 100 for i in range(37)]},
                "validation": {"logloss": [1.1 - i / 100 for i in range(37)]},
            },
        }
    )
    text = training_summary(meta, reused=False)
    assert "resumed from the checkpoint at round 20" in text
    assert "- rounds: 37 of 50 (early stopping 5), best iteration 31" in text
    assert "- workers: 3" in text and "- timings: load 1.00 s, train 2.50 s" in text
    rows = history_rows(meta.eval_history, samples=10)
    assert rows[0] == "| round | train logloss | validation logloss |"
    # Evenly spaced rounds and always the last one.
    assert [r.split(" | ")[0] for r in rows[2:]][-1] == "| 37"
    assert len(rows) - 2 == 10  # rounds 1, 5, ..., 37
    assert history_rows({}) == []


def partition(frame: pd.DataFrame, name: str, expectations: list[ExpectationSpec]):  # type: ignore[no-untyped-def]
    return validate_frame(
        frame, expectations, suite_key="k1", partition_id=f"p-{name}", source_uri=f"s3://l/{name}"
    )


EXPECTATIONS = [
    ExpectationSpec(type="expect_column_values_to_not_be_null", kwargs={"column": "a"}),
    ExpectationSpec(
        type="expect_column_values_to_be_between",
        kwargs={"column": "a", "min_value": 0, "max_value": 5},
    ),
]


def report() -> ValidationReport:
    good = partition(pd.DataFrame({"a": [1, 2, 3]}), "good.csv", EXPECTATIONS)
    bad = partition(pd.DataFrame({"a": [1, 9, 9]}), "bad.csv", EXPECTATIONS)
    old = good.model_copy(update={"partition_id": "p-old", "gx_result": None})
    return ValidationReport(
        dataset="d",
        dataset_version="v1",
        expectations_hash="k1",
        partitions=[good, bad, old],
        accepted=["p-good.csv", "p-old"],
        rejected=["p-bad.csv"],
        ingest_quarantined=0,
        total_files=3,
        accepted_fraction=2 / 3,
        threshold=0.5,
        passed=True,
    )


def test_expectation_table_counts_failures_per_expectation_over_partitions() -> None:
    rows = expectation_table(report())
    assert rows[0] == {
        "expectation": "expect_column_values_to_be_between",
        "column": "a",
        "partitions": 3,
        "failed": 1,
        "unexpected": 2,
        "failed in": "bad.csv",
    }
    assert rows[1]["failed"] == 0 and rows[1]["failed in"] == ""


def test_data_docs_site_has_a_page_per_validated_partition_and_the_suite(tmp_path: Path) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    files = build_site(report(), EXPECTATIONS, str(tmp_path), version_time=when)
    pages = [f for f in files if f.startswith("validations/")]
    # The partition cached before GX results were kept has no page; the others do.
    assert sorted(Path(p).name.split("-p-")[0] for p in pages) == ["bad.csv", "good.csv"]
    assert "index.html" in files and "expectations/suite-k1.html" in files
    # Keyed by the dataset version and its time: a re-run rewrites the same pages.
    assert all(p.startswith("validations/suite-k1/d-v1/20260102T030405") for p in pages)
    index = (tmp_path / "index.html").read_text()
    assert all(p in index for p in pages)
    wanted = site_files(str(tmp_path), files)
    assert wanted[-1] == "index.html" and "static/images/favicon.ico" in wanted
    assert not [f for f in wanted if f.endswith((".gif", ".otf"))]
    bad = next(p for p in pages if "bad.csv" in p)
    assert "2 unexpected values found" in re.sub(r"\s+", " ", (tmp_path / bad).read_text())


def test_data_docs_are_rendered_again_only_when_the_report_changes(ingested: Ingested) -> None:
    lake, spec, version = ingested.lake, ingested.spec, ingested.version
    index = site_path(lake, spec.name, "index.html")
    assert write_data_docs(ingested.report, spec, version, lake) == lake.url_of(index)
    lake.write_bytes(index, b"left alone")
    # A re-run's report differs only in when it was written: the pages stay as they are.
    rerun = ingested.report.model_copy(update={"created_at": datetime.now(UTC)})
    write_data_docs(rerun, spec, version, lake)
    assert lake.read_bytes(index) == b"left alone"
    # Another outcome is another report: rendered again.
    changed = ingested.report.model_copy(update={"threshold": 0.99})
    write_data_docs(changed, spec, version, lake)
    assert b"<html" in lake.read_bytes(index).lower()
