"""A model's test rows kept by partition (labels and predictions), and which of them a later
training may take instead of predicting again."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.train.predictions import (
    Kept,
    decode_predictions,
    encode_predictions,
    reusable_predictions,
)
from tests.support.models import metadata

pytestmark = pytest.mark.timeout(30)


def kept(labels: list[float], predictions: np.ndarray | list[float]) -> Kept:
    return Kept(np.asarray(labels, "float64"), np.asarray(predictions, "float32"))


def test_kept_rows_round_trip_by_partition_id_wherever_the_lake_is() -> None:
    binary = {
        "file:///lake/datasets/d/partitions/p1.parquet": kept([0, 1], [0.25, 0.5]),
        "s3://bucket/lake/datasets/d/partitions/p2.parquet": kept([], []),
        "file:///lake/datasets/d/partitions/p3.parquet": kept([1], [0.75]),
    }
    decoded = decode_predictions(encode_predictions(binary))
    # A partition without test rows has nothing to keep.
    assert list(decoded) == ["p1", "p3"]
    assert decoded["p1"].labels.tolist() == [0, 1]
    assert decoded["p1"].predictions.tolist() == [0.25, 0.5]
    assert decoded["p3"].predictions.dtype == np.float32
    classes = {
        "a/p1.parquet": kept([0, 1, 1], np.arange(6).reshape(3, 2)),
        "a/p2.parquet": kept([1], np.ones((1, 2))),
    }
    decoded = decode_predictions(encode_predictions(classes))
    assert decoded["p1"].predictions.shape == (3, 2)
    assert decoded["p2"].predictions.tolist() == [[1.0, 1.0]]
    assert decode_predictions(encode_predictions({})) == {}


def test_rows_kept_by_another_way_of_preparing_rows_or_another_xgboost_are_not_used() -> None:
    data = encode_predictions({"a/p1.parquet": kept([1], [0.5])})
    table = pq.ParquetFile(io.BytesIO(data)).read()
    for key, value in ((b"mlops.rows_format", b"0"), (b"mlops.xgboost", b"1.7.0")):
        sink = io.BytesIO()
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, key: value}), sink)
        assert decode_predictions(sink.getvalue()) == {}
    assert list(decode_predictions(data)) == ["p1"]


def test_only_partitions_the_model_was_judged_on_with_the_same_rows_skipped_are_reused() -> None:
    root = "file:///moved/lake/datasets/d/partitions"
    model = metadata("v1").model_copy(
        update={
            # Written where the lake was when the model was trained.
            "partitions": [f"file:///old/{p}.parquet" for p in ("p1", "p2", "p3")],
            "excluded_rows": {"file:///old/p2.parquet": [(0, 10)]},
        }
    )
    stored = {p: kept([1, 0, 1], [0.5] * 3) for p in ("p1", "p2", "p3", "p9")}
    uris = [f"{root}/{p}.parquet" for p in ("p1", "p2", "p3", "p4", "p9")]
    reused = reusable_predictions(
        stored, model=model, uris=uris, excluded={f"{root}/p3.parquet": [(5, 6)]}
    )
    # p2 skipped rows then and none now, p3 the reverse; p4 is new; p9 it was not trained on.
    assert list(reused) == [f"{root}/p1.parquet"]
    same = reusable_predictions(
        stored, model=model, uris=uris, excluded={f"{root}/p2.parquet": [(0, 10)]}
    )
    assert sorted(same) == [f"{root}/p1.parquet", f"{root}/p2.parquet", f"{root}/p3.parquet"]
