"""Casting to the spec's schema: values, nulls, and errors that name the file and column."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from tasks.errors import PartitionError
from tasks.ingest.cast import cast_column, cast_to_schema
from tasks.spec import ColumnSpec, DatasetSpec, load_spec

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def spec(demo_spec: str) -> DatasetSpec:
    return load_spec(demo_spec)


@pytest.mark.parametrize(
    ("values", "kind", "expected"),
    [
        (["1", " 2 ", None], "int", [1, 2, None]),
        (["1.5", "nan"], "float", [1.5, float("nan")]),
        (["true", "FALSE", "1", "0"], "bool", [True, False, True, False]),
        (["a", "b", "a"], "category", ["a", "b", "a"]),
        (
            ["2024-01-02", "2024-01-02T03:04:05Z"],
            "datetime",
            ["2024-01-02 00:00:00", "2024-01-02 03:04:05"],
        ),
    ],
)
def test_cast_column_from_text(values: list, kind: str, expected: list) -> None:
    result = cast_column(pa.chunked_array([pa.array(values, pa.string())]), ColumnSpec(type=kind))
    got = result.to_pylist()
    if kind == "datetime":
        got = [str(v) for v in got]
    if kind == "float":
        assert got[0] == 1.5 and got[1] != got[1]
    else:
        assert got == expected


def test_cast_errors_name_file_and_column(spec: DatasetSpec) -> None:
    sample = {"int": "1", "float": "1.5", "bool": "true", "category": "a", "string": "s"}
    sample["datetime"] = "2024-01-01"
    frame = pd.DataFrame({name: [sample[c.type]] for name, c in spec.columns.items()})
    frame["is_senior"] = ["maybe"]
    with pytest.raises(
        PartitionError, match=r"f.csv: column 'is_senior': cannot cast text to bool"
    ):
        cast_to_schema(pa.Table.from_pandas(frame), spec=spec, uri="f.csv")


def test_numbers_are_not_guessed_into_datetimes(spec: DatasetSpec) -> None:
    with pytest.raises(pa.ArrowInvalid, match="numbers have no time unit"):
        cast_column(pa.chunked_array([pa.array([1_700_000_000])]), ColumnSpec(type="datetime"))


def test_an_optional_column_may_be_missing_and_is_all_nulls(spec: DatasetSpec) -> None:
    frame = pd.DataFrame({name: ["1"] for name in spec.columns if name != "churned"})
    frame["contract"] = ["one-year"]
    frame["signup_date"] = ["2024-01-01"]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with pytest.raises(PartitionError, match="missing column"):
        cast_to_schema(table, spec=spec, uri="f.csv")
    cast, _ = cast_to_schema(table, spec=spec, uri="f.csv", optional=frozenset({"churned"}))
    assert cast.column("churned").null_count == 1
    assert cast.schema.field("churned").type == pa.bool_()
