"""A model's test-row predictions kept by partition, and which of them a later training
may take instead of predicting again."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.train.predictions import decode_predictions, encode_predictions, reusable_predictions
from tests.support.models import metadata

pytestmark = pytest.mark.timeout(30)


def test_predictions_round_trip_by_partition_id_wherever_the_lake_is() -> None:
    binary = {
        "file:///lake/datasets/d/partitions/p1.parquet": np.array([0.25, 0.5], "float32"),
        "s3://bucket/lake/datasets/d/partitions/p2.parquet": np.zeros(0, "float32"),
        "file:///lake/datasets/d/partitions/p3.parquet": np.array([0.75], "float32"),
    }
    decoded = decode_predictions(encode_predictions(binary))
    # A partition without test rows has nothing to keep.
    assert list(decoded) == ["p1", "p3"]
    np.testing.assert_array_equal(
        decoded["p1"], binary["file:///lake/datasets/d/partitions/p1.parquet"]
    )
    assert decoded["p3"].dtype == np.float32 and decoded["p3"].shape == (1,)
    classes = {
        "a/p1.parquet": np.arange(6, dtype="float32").reshape(3, 2),
        "a/p2.parquet": np.ones((1, 2), "float32"),
    }
    decoded = decode_predictions(encode_predictions(classes))
    assert decoded["p1"].shape == (3, 2) and decoded["p2"].tolist() == [[1.0, 1.0]]
    assert decode_predictions(encode_predictions({})) == {}


def test_only_partitions_the_model_was_judged_on_with_the_same_rows_skipped_are_reused() -> None:
    root = "file:///moved/lake/datasets/d/partitions"
    model = metadata("v1").model_copy(
        update={
            # Written where the lake was when the model was trained.
            "partitions": [f"file:///old/{p}.parquet" for p in ("p1", "p2", "p3")],
            "excluded_rows": {"file:///old/p2.parquet": [(0, 10)]},
        }
    )
    stored = {p: np.full(3, 0.5, "float32") for p in ("p1", "p2", "p3", "p9")}
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
