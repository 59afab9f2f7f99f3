"""One partition validated as a pandas frame on the Dask worker that reads it.

Great Expectations has no Dask engine, so each partition is validated where it is
processed, with one ephemeral GX context per worker process (built on first use).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow.parquet as pq

from tasks.records import ExpectationOutcome, PartitionRef, PartitionValidation
from tasks.spec import DatasetSpec, ExpectationSpec
from tasks.storage import open_file
from tasks.validate.expectations import ephemeral_context, expectation

# Great Expectations takes seconds to import: only validation, which needs it, imports it.
if TYPE_CHECKING:
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_suite import ExpectationSuite

# Bumped when PartitionValidation gains what older cached results lack (2: GX's own result).
RESULT_FORMAT = 2

_lock = threading.Lock()

_state: dict[str, Any] = {}


def _gx_batch_and_suite(
    expectations: list[ExpectationSpec], key: str
) -> tuple[BatchDefinition, ExpectationSuite]:
    """This process's GX context and the suite for ``key``, built once and reused."""
    with _lock:
        if "context" not in _state:
            context = ephemeral_context()
            asset = context.data_sources.add_pandas("partitions").add_dataframe_asset("partition")
            _state["context"] = context
            _state["batch"] = asset.add_batch_definition_whole_dataframe("whole")
            _state["suites"] = {}
        suites: dict[str, ExpectationSuite] = _state["suites"]
        if key not in suites:
            import great_expectations as gx

            suite = gx.ExpectationSuite(name=f"suite-{key}")
            for config in expectations:
                suite.add_expectation(expectation(config))
            suites[key] = suite
        return _state["batch"], suites[key]


def _exception_message(info: dict[str, Any]) -> str | None:
    """GX reports errors flat or keyed by the metric that raised; either way, the first message."""
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _outcome(result: Any) -> ExpectationOutcome:
    config = result.expectation_config
    details = result.result or {}
    error = _exception_message(result.exception_info or {})
    partial = details.get("partial_unexpected_list") or []
    return ExpectationOutcome(
        type=config.type,
        column=config.kwargs.get("column"),
        success=bool(result.success),
        unexpected_count=details.get("unexpected_count"),
        unexpected_percent=details.get("unexpected_percent"),
        partial_unexpected=[str(v) for v in partial[:5]],
        error=error,
    )


def validate_frame(
    frame: pd.DataFrame,
    expectations: list[ExpectationSpec],
    *,
    suite_key: str,
    partition_id: str,
    source_uri: str,
    result_format: Literal["BOOLEAN_ONLY", "SUMMARY"] = "SUMMARY",
) -> PartitionValidation:
    """Run the expectations on one in-memory partition.

    ``result_format="BOOLEAN_ONLY"`` only says whether each expectation passed (about a
    third faster): for a first pass whose failures are then looked at in full.
    """
    batch_definition, suite = _gx_batch_and_suite(expectations, suite_key)
    # The context is shared by the worker's threads and GX does not promise thread safety;
    # partitions still validate in parallel across worker processes.
    with _lock:
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format=result_format)
    outcomes = [_outcome(r) for r in result.results]
    return PartitionValidation(
        partition_id=partition_id,
        source_uri=source_uri,
        success=bool(result.success),
        rows=len(frame),
        evaluated=len(outcomes),
        failed=sum(not o.success for o in outcomes),
        unexpected_total=sum(o.unexpected_count or 0 for o in outcomes if not o.success),
        expectations=outcomes,
        gx_result=result.to_json_dict(),
    )


def read_partition_frame(uri: str) -> pd.DataFrame:
    """One partition as pandas (read where it is processed)."""
    with open_file(uri, "rb") as fh:
        return pq.read_table(fh).to_pandas()


def validate_partition(*, partition: PartitionRef, spec: DatasetSpec) -> PartitionValidation:
    """Validate one partition (where it is processed: on a Dask worker)."""
    return validate_frame(
        read_partition_frame(partition.uri),
        spec.all_expectations(),
        suite_key=spec.expectations_hash(),
        partition_id=partition.partition_id,
        source_uri=partition.label,
    )


def validate_files(*, partition: PartitionRef, spec: DatasetSpec) -> list[PartitionValidation]:
    """Validate each landing file's rows of a partition on their own (a packed partition
    that failed: which of its files are at fault?)."""
    frame = read_partition_frame(partition.uri)
    expectations = spec.all_expectations()
    return [
        validate_frame(
            frame.iloc[segment.start : segment.stop].reset_index(drop=True),
            expectations,
            suite_key=spec.expectations_hash(),
            partition_id=partition.partition_id,
            source_uri=segment.source_uri,
        ).model_copy(update={"start": segment.start})
        for segment in partition.segments
    ]
