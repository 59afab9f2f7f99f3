"""What a whole run reports: its Prometheus metrics, stage table and terminal summary."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tasks.pipeline import run_metrics, stage_table
from tasks.records import PipelineResult

pytestmark = pytest.mark.timeout(60)


def pipeline_result() -> PipelineResult:
    return PipelineResult(
        dataset="customers",
        dataset_version="dv1",
        files_total=5,
        files_accepted=4,
        files_quarantined=1,
        files_read=2,
        partitions_total=2,
        partitions_accepted=2,
        new_partitions=1,
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
    assert samples[("mlops_landing_files", (customers, ("state", "quarantined")))] == 1
    assert samples[("mlops_landing_files", (customers, ("state", "read")))] == 2
    assert samples[("mlops_partitions", (customers, ("state", "new")))] == 1
    assert samples[("mlops_model_metric", (customers, ("metric", "roc_auc")))] == 0.9
    assert samples[("mlops_promoted", (customers,))] == 1
    assert samples[("mlops_last_run_timestamp_seconds", (customers,))] == 1_700_000_000.0
    assert [row["stage"] for row in stage_table(pipeline_result())] == [
        "ingest",
        "validate",
        "train",
        "promote",
    ]


def test_summary_shows_files_partitions_and_stage_times() -> None:
    summary = pipeline_result().summary()
    assert "stages    ingest 1.5 s, validate 2.0 s, train 3.2 s, promote 0.5 s" in summary
    assert (
        "4,000 rows from 4/5 accepted landing files (2 read now, 1 quarantined) in "
        "2 partition(s) (1 new)"
    ) in summary
