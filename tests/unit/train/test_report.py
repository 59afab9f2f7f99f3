"""The training summary and the training report page."""

from __future__ import annotations

import pytest

from tasks.train.report import history_rows, training_summary
from tests.support.models import metadata

pytestmark = pytest.mark.timeout(60)


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
