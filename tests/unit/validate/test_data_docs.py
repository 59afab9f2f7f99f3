"""Data Docs pages and the per-expectation table, from a report of real GX results."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from tasks.records import ValidationReport
from tasks.spec import ExpectationSpec
from tasks.validate.data_docs import build_site, site_files, site_path, write_data_docs
from tasks.validate.partition import validate_frame
from tasks.validate.publish import expectation_table
from tests.support.ingested import Ingested

pytestmark = pytest.mark.timeout(120)


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
