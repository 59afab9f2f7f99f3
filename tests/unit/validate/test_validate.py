from __future__ import annotations

import pandas as pd
import pytest

from tasks.errors import SpecError
from tasks.records import DatasetVersion, PartitionRef, PartitionValidation
from tasks.spec import ExpectationSpec, load_spec
from tasks.validate.expectations import check_expectations
from tasks.validate.partition import validate_frame
from tasks.validate.publish import report_table
from tasks.validate.report import failure_message, failure_reason, write_report

pytestmark = pytest.mark.timeout(120)

EXPECTATIONS = [
    ExpectationSpec(type="expect_column_values_to_not_be_null", kwargs={"column": "x"}),
    ExpectationSpec(
        type="expect_column_values_to_be_between",
        kwargs={"column": "x", "min_value": 0, "max_value": 3},
    ),
    ExpectationSpec(
        type="expect_column_values_to_be_in_set", kwargs={"column": "c", "value_set": ["a", "b"]}
    ),
]


def test_validate_frame_counts_failures_per_expectation() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, None, 9.0], "c": ["a", "b", "z", "a"]})
    result = validate_frame(
        frame, EXPECTATIONS, suite_key="t1", partition_id="p", source_uri="f.csv"
    )
    assert not result.success
    assert (result.evaluated, result.failed, result.rows) == (3, 3, 4)
    by_type = {o.type: o for o in result.expectations}
    assert by_type["expect_column_values_to_not_be_null"].unexpected_count == 1
    assert by_type["expect_column_values_to_be_between"].unexpected_count == 1
    assert by_type["expect_column_values_to_be_in_set"].partial_unexpected == ["z"]
    reason = failure_reason(result)
    assert reason.startswith("f.csv: failed 3 of 3 expectations")
    assert "expect_column_values_to_be_in_set(c): 1 unexpected value(s), e.g. z" in reason


def test_clean_frame_passes_and_missing_column_is_reported_as_error() -> None:
    clean = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    assert validate_frame(
        clean, EXPECTATIONS, suite_key="t1", partition_id="p", source_uri="f"
    ).success
    broken = validate_frame(
        clean.drop(columns=["c"]), EXPECTATIONS, suite_key="t1", partition_id="p", source_uri="f"
    )
    missing = next(o for o in broken.expectations if o.column == "c")
    assert not missing.success and missing.error


def test_bad_expectation_is_a_spec_error_naming_its_index(demo_spec: str) -> None:
    spec = load_spec(demo_spec)
    bad = spec.model_copy(
        update={
            "expectations": [
                *spec.expectations,
                ExpectationSpec(type="expect_no_such_thing", kwargs={}),
                ExpectationSpec(type="expect_column_values_to_be_between", kwargs={"colum": "age"}),
            ]
        }
    )
    check_expectations(spec, source="demo.yaml")  # the demo spec is fine
    with pytest.raises(SpecError) as err:
        check_expectations(bad, source="demo.yaml")
    n = len(spec.expectations)
    assert f"demo.yaml: expectations.{n} (expect_no_such_thing)" in str(err.value)
    assert f"demo.yaml: expectations.{n + 1} (expect_column_values_to_be_between)" in str(err.value)


def _result(pid: str, success: bool) -> PartitionValidation:
    return PartitionValidation(
        partition_id=pid,
        source_uri=f"s/{pid}.csv",
        success=success,
        rows=10,
        evaluated=2,
        failed=0 if success else 1,
        unexpected_total=0 if success else 3,
        expectations=[],
    )


def _version(pids: list[str], quarantined: int) -> DatasetVersion:
    from tasks.records import QuarantineRecord

    return DatasetVersion(
        dataset="customers",
        version="v1",
        source_uri="s",
        spec_hash="h",
        schema_hash="h",
        partitions=[
            PartitionRef(
                partition_id=p,
                uri=f"l/{p}",
                source_uri=f"s/{p}.csv",
                source_hash=p,
                source_format="csv",
                rows=10,
                bytes=1,
            )
            for p in pids
        ],
        quarantined=[
            QuarantineRecord(
                record_id=f"q{i}", stage="ingest", source_uri=f"s/q{i}.csv", reason="bad"
            )
            for i in range(quarantined)
        ],
    )


@pytest.mark.parametrize(
    ("passing", "failing", "unreadable", "threshold", "passed"),
    [
        (4, 0, 0, 1.0, True),
        (3, 1, 0, 0.75, True),
        (3, 1, 0, 0.8, False),
        (2, 1, 1, 0.5, True),  # unreadable files count against the threshold
        (2, 1, 1, 0.6, False),
        (0, 2, 0, 0.0, False),  # nothing accepted never passes
    ],
)
def test_report_threshold(
    tmp_path,
    demo_spec: str,
    passing: int,
    failing: int,
    unreadable: int,
    threshold: float,
    passed: bool,
) -> None:
    from tasks.lake import Lake

    spec = load_spec(demo_spec)
    spec = spec.model_copy(
        update={
            "validation": spec.validation.model_copy(update={"min_accepted_fraction": threshold})
        }
    )
    pids = [f"p{i}" for i in range(passing + failing)]
    results = [_result(p, i < passing) for i, p in enumerate(pids)]
    lake = Lake(str(tmp_path))
    version = _version(pids, unreadable)
    report = write_report(spec=spec, lake=lake, version=version, results=results)
    assert report.passed is passed
    assert report.total_files == passing + failing + unreadable
    assert len(report.accepted) == passing and len(report.rejected) == failing
    records = sorted((tmp_path / "datasets" / "customers" / "quarantine").glob("*.json"))
    assert len(records) == failing
    assert sorted(report.rejected_files) == sorted(f"s/{p}.csv" for p in pids[passing:])
    assert len(report_table(report)) == passing + failing
    if not passed:
        message = failure_message(report, version)
        assert f"{passing} of {report.total_files} landing file(s) accepted" in message
        assert all(f"s/{p}.csv" in message for p in pids[passing:])
