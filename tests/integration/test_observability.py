"""One pipeline run on defective data, then everything it shows read back: artifacts through
the Prefect API (attached to the run's flow runs), the report files in the lake, the metrics
file, structured log records and the progress updates."""

from __future__ import annotations

import asyncio
import logging
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flows.pipeline import ml_pipeline
from tasks.records import PipelineResult
from tasks.runtime.progress import ProgressUpdate, progress_listener

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


class Page(HTMLParser):
    """An HTML page's text and tag count (parsing the whole page proves it is HTML)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags = 0
        self.feed(path.read_text())
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def run_artifacts(root: Any) -> dict[str, Any]:
    """Every artifact of the pipeline run and its stage runs, by key (latest first)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    async with get_client() as client:
        stages = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[root])
            )
        )
        runs = [root, *(r.id for r in stages)]
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=runs))
        )
    by_key: dict[str, Any] = {}
    for artifact in sorted(found, key=lambda a: a.created, reverse=True):
        by_key.setdefault(artifact.key, artifact)
    return by_key


def linked_file(artifact: Any) -> Path:
    """The lake file a link artifact points to (its markdown is ``[uri](uri)``)."""
    uri = artifact.data.split("](", 1)[1].rstrip(")")
    assert uri.startswith("file://"), uri
    path = Path(unquote(urlsplit(uri).path))
    assert path.is_file(), path
    return path


def table(artifact: Any) -> list[dict[str, Any]]:
    import json

    assert artifact.type == "table"
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def test_defective_files_are_quarantined_while_the_rest_trains_and_the_run_shows_it(
    demo_spec: str,
    defect_source: Path,
    lake: str,
    dask_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The suite turns the reports off (tests/conftest.py); this run makes them as users do.
    monkeypatch.setenv("MLOPS_DASK_PERFORMANCE_REPORT", "cdn")
    updates: list[ProgressUpdate] = []
    records = Records()
    logging.getLogger("prefect").addHandler(records)
    # On the session's cluster as an existing scheduler: saves a cluster start per stage
    # (tests/integration/test_pipeline.py runs stages on their own clusters, as `make run`).
    cluster = dask_client.scheduler.address
    try:
        with progress_listener(updates.append):
            state = ml_pipeline(
                spec=demo_spec,
                source=str(defect_source),
                lake=lake,
                cluster=cluster,
                return_state=True,
            )
    finally:
        logging.getLogger("prefect").removeHandler(records)
    result: PipelineResult = state.result()

    # Bad files set aside with their reasons; the good ones trained a champion.
    assert (result.files_total, result.files_accepted, result.files_quarantined) == (8, 4, 4)
    # Eight small files are one partition: the good rows of it were trained on.
    assert (result.partitions_total, result.partitions_accepted) == (1, 1)
    assert result.promoted and result.metrics["roc_auc"] > 0.75
    reasons = "\n".join(result.quarantined)
    assert "customers-0001.csv.gz: column 'age': cannot cast text to int" in reasons
    assert "customers-0002.parquet: failed 2 of" in reasons
    assert "customers-0003.csv: missing column(s) 'monthly_charges'" in reasons
    assert "customers-0004.csv.gz: file is truncated or corrupt" in reasons
    quarantine = Path(lake) / "datasets" / "customers" / "quarantine"
    assert len(list(quarantine.glob("*.json"))) == 4

    artifacts = asyncio.run(run_artifacts(state.state_details.flow_run_id))

    # Ingestion: every landing file, with its fate and reason.
    ingest = {row["source"]: row for row in table(artifacts["ingest-customers"])}
    assert len(ingest) == 8
    assert ingest["customers-0003.csv"]["status"] == "quarantined"
    assert "missing column(s) 'monthly_charges'" in ingest["customers-0003.csv"]["reason"]
    assert len({r["partitions"] for r in ingest.values() if r["status"] == "new"}) == 1

    # Validation of the partition, then of each of its files (it failed), and per expectation.
    rows = table(artifacts["validation-customers"])
    assert [r["of"] for r in rows] == ["partition"] + ["file"] * 5
    files = {row["source"]: row for row in rows if row["of"] == "file"}
    new_rows = sum(r["rows"] for r in ingest.values() if r["status"] == "new")
    assert new_rows == rows[0]["rows"] == sum(r["rows"] for r in files.values())
    assert files["customers-0002.parquet"]["success"] is False
    assert files["customers-0000.csv"]["success"] is True
    expectations = table(artifacts["validation-expectations-customers"])
    failing = [row for row in expectations if row["failed"]]
    assert failing and all(row["failed in"] == "customers-0002.parquet" for row in failing)
    assert all(row["partitions"] == 1 for row in expectations)

    # Great Expectations Data Docs: the index links a page per partition, all in the lake.
    index_path = linked_file(artifacts["data-docs-customers"])
    assert "Great Expectations" in Page(index_path).words
    # The index's tables are data for its script: the links are in the page source.
    source = index_path.read_text()
    suite_pages = {
        index_path.parent / p for p in re.findall(r"expectations/[^'\"\s]+\.html", source)
    }
    assert len(suite_pages) == 1 and all(p.is_file() for p in suite_pages)
    pages = [index_path.parent / p for p in set(re.findall(r"validations/[^'\"\s]+\.html", source))]
    # One for the partition, one for each of its files (validated alone once it failed).
    assert len(pages) == 6 and all(p.is_file() for p in pages)
    failed_page = next(p for p in pages if "customers-0002.parquet" in p.name)
    # GX's own rendering of the failure: the rule, the count, a sampled value.
    failed_words = Page(failed_page).words
    assert "values must be greater than or equal to 18.0" in failed_words
    assert "23 unexpected values found" in failed_words and "Sampled Unexpected Values 150" in (
        failed_words
    )
    # Only the static assets the pages reference are copied (GX ships megabytes more).
    assert [p.name for p in (index_path.parent / "static").rglob("*") if p.is_file()] == [
        "favicon.ico"
    ]

    # Training: summary with rounds, history, timings and workers; the report with curves.
    summary = artifacts["training-customers"].data
    assert f"# Training: customers @ {result.model_version}" in summary
    for part in ("- rounds: ", "best iteration", "- workers: 2", "- timings: load", "| round |"):
        assert part in summary, part
    report = Page(linked_file(artifacts["training-report-customers"]))
    assert "Learning curve" in report.words and "Feature importance" in report.words

    # The decision, with the champion comparison and parameters.
    card = artifacts["model-card-customers"]
    assert "**Decision:** promoted to champion" in card.data and "## Parameters" in card.data

    # A Dask performance report per stage that used a cluster, each on its stage's run.
    for stage in ("ingest", "validate", "train"):
        page = Page(linked_file(artifacts[f"dask-report-{stage}"]))
        assert "Dask Performance Report" in page.words and page.tags > 10

    # Progress: 100% at the end, and the same updates seen in-process, in order.
    for stage, total in (("ingest", 1), ("validate", 1), ("train", 300)):
        assert artifacts[f"{stage}-progress-customers"].data == 100.0
        seen = [u for u in updates if u.stage == stage]
        assert seen[-1].done == seen[-1].total == total
        assert [u.done for u in seen] == sorted(u.done for u in seen)

    # Stage durations and counts: a table, and Prometheus text in the lake.
    stages = table(artifacts["run-metrics-customers"])
    assert [row["stage"] for row in stages] == ["ingest", "validate", "train", "promote"]
    assert all(row["seconds"] > 0 for row in stages)
    prom = Path(lake) / "runs" / "metrics" / "customers.prom"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(prom.read_text())
        for s in family.samples
    }
    key = ("mlops_rows", (("dataset", "customers"), ("kind", "accepted")))
    assert samples[key] == result.rows
    key = ("mlops_landing_files", (("dataset", "customers"), ("state", "quarantined")))
    assert samples[key] == 4

    # Structured logs: the ids ride on the records.
    quarantined = [r for r in records.records if getattr(r, "stage", None) == "validate"]
    assert any(getattr(r, "source_uri", "").endswith("0002.parquet") for r in quarantined)
    assert all(getattr(r, "dataset", None) == "customers" for r in quarantined)
    trained = [r for r in records.records if getattr(r, "stage", None) == "train"]
    assert trained and all(r.model_version == result.model_version for r in trained)
