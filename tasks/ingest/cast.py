"""Casting what a landing file holds to the spec's schema, with errors that name the file
and the column."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.errors import PartitionError
from tasks.spec import ColumnSpec, DatasetSpec

NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]

ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "datetime": pa.timestamp("us"),
}


def csv_nulls(table: pa.Table, spec: DatasetSpec) -> pa.Table:
    """Apply CSV null markers by column type.

    "NA" or "None" can be real values of a text column (North America, a category named
    None), so text columns treat only empty fields as missing; typed columns also accept
    the usual markers (NA, null, NaN, ...).
    """
    for i, name in enumerate(table.column_names):
        column = spec.columns.get(name)
        array = table.column(i)
        if column is None or not pa.types.is_string(array.type):
            continue
        markers = [""] if column.type in ("string", "category") else NULL_VALUES
        missing = pc.is_in(array, value_set=pa.array(markers, pa.string()))
        table = table.set_column(i, name, pc.if_else(missing, pa.scalar(None, pa.string()), array))
    return table


def cast_column(array: pa.ChunkedArray, column: ColumnSpec) -> pa.ChunkedArray:
    """Cast one column to its spec type; raises ``pa.ArrowInvalid`` with pyarrow's reason."""
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    is_text = pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
    if column.type == "category":
        text = array if is_text else pc.cast(array, pa.string())
        return pc.dictionary_encode(text)
    if is_text and column.type in ("int", "float", "bool"):
        array = pc.utf8_trim_whitespace(array)
    if column.type == "datetime":
        if not (is_text or pa.types.is_timestamp(array.type) or pa.types.is_date(array.type)):
            # Epoch numbers carry no unit (s? ms? us?); guessing would shift every date.
            raise pa.ArrowInvalid(
                "numbers have no time unit; store ISO 8601 text, a date or a timestamp"
            )
        if pa.types.is_timestamp(array.type) and array.type.tz is not None:
            return pc.cast(array, pa.timestamp("us", "UTC")).cast(pa.timestamp("us"))
        try:
            return pc.cast(array, pa.timestamp("us"))
        except pa.ArrowInvalid as naive_error:
            if not is_text:
                raise
            # Some values carry a zone offset: read them all as ISO 8601 (naive ones as UTC),
            # normalise to UTC and drop the zone. Report the plain error if even that fails.
            try:
                parsed = pd.to_datetime(array.to_pandas(), utc=True, format="ISO8601")
            except (ValueError, TypeError):
                raise naive_error from None
            return pa.chunked_array([pa.array(parsed.dt.tz_convert(None), type=pa.timestamp("us"))])
    return pc.cast(array, ARROW_TYPES[column.type])


def arrow_type(column: ColumnSpec) -> pa.DataType:
    """The Arrow type a column is cast to."""
    if column.type == "category":
        return pa.dictionary(pa.int32(), pa.string())
    return ARROW_TYPES[column.type]


def cast_to_schema(
    table: pa.Table, *, spec: DatasetSpec, uri: str, optional: frozenset[str] = frozenset()
) -> tuple[pa.Table, list[str]]:
    """The table with exactly the spec's columns, in order and typed; plus columns dropped.

    A missing ``optional`` column (the target, at scoring) is all nulls.
    """
    # Arrow builds the list of names anew on each access: read it once.
    names = table.column_names
    present = set(names)
    repeated = sorted({n for n in names if names.count(n) > 1}) if len(present) < len(names) else []
    if repeated:
        raise PartitionError(
            f"{uri}: column(s) {', '.join(map(repr, repeated))} appear more than once"
        )
    missing = [name for name in spec.columns if name not in present and name not in optional]
    if missing:
        raise PartitionError(
            f"{uri}: missing column(s) {', '.join(repr(m) for m in missing)} "
            f"(file has: {', '.join(names)})"
        )
    arrays = []
    for name, column in spec.columns.items():
        if name not in present:
            arrays.append(pa.chunked_array([pa.nulls(table.num_rows, arrow_type(column))]))
            continue
        source = table.column(name)
        try:
            arrays.append(cast_column(source, column))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            kind = (
                "text"
                if pa.types.is_string(source.type) or pa.types.is_large_string(source.type)
                else source.type
            )
            raise PartitionError(
                f"{uri}: column '{name}': cannot cast {kind} to {column.type}: {err}"
            ) from None
    dropped = [name for name in names if name not in spec.columns]
    return pa.Table.from_arrays(arrays, names=list(spec.columns)), dropped


def distinct_values(table: pa.Table, spec: DatasetSpec) -> dict[str, list[str]]:
    """Distinct non-null values of category columns and of a classification target."""
    columns = [n for n, c in spec.columns.items() if c.type == "category"]
    if spec.task != "regression" and spec.target not in columns:
        columns.append(spec.target)
    out: dict[str, list[str]] = {}
    for name in columns:
        array = table.column(name)
        if pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)
        values = pc.unique(array.drop_null()).to_pylist()
        out[name] = sorted(str(v) for v in values)
    return out
