"""Model metadata and a real (tiny) booster for tests of the registry, promotion and reports."""

from __future__ import annotations

import numpy as np
import xgboost

from tasks.records import FeatureLayout, ModelMetadata


def metadata(version: str, value: float = 0.8) -> ModelMetadata:
    return ModelMetadata(
        model_name="m",
        version=version,
        layout=FeatureLayout(
            task="binary",
            target="y",
            key=None,
            features=["a"],
            feature_types={"a": "float"},
            categories={},
            classes=["0", "1"],
            split={"validation": 0.15, "test": 0.15, "salt": ""},
        ),
        params={"objective": "binary:logistic"},
        num_boost_round=2,
        early_stopping_rounds=None,
        best_iteration=1,
        best_score=None,
        metric="roc_auc",
        direction="maximize",
        metrics={"roc_auc": value},
        rows={"train": 8, "validation": 1, "test": 1},
        eval_history={},
        dataset="d",
        dataset_version="dv",
        partitions=[],
        spec_hash="s",
        training_hash="t",
        package_version="0",
        xgboost_version=xgboost.__version__,
        workers=1,
        timings={},
    )


def model_bytes() -> bytes:
    x = np.arange(20, dtype=float).reshape(-1, 1)
    booster = xgboost.train({"objective": "binary:logistic"}, xgboost.DMatrix(x, x[:, 0] > 9), 2)
    return bytes(booster.save_raw(raw_format="ubj"))
