"""The plain script the pipeline is compared with: what a user would write without it.

Reads every Parquet file with pyarrow, runs the spec's checks in pandas, splits rows by the
same key hash, trains with ``xgboost.train`` on all cores with the same parameters, rounds,
early stopping and metric, and scores the test rows. Prints one JSON line: phase timings,
rows, the frame's in-memory size and the test AUC.

    python -m benchmarks.baseline --spec benchmarks/bench.yaml --source DIR
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.spec import DatasetSpec, ExpectationSpec, load_spec


def check(frame: pd.DataFrame, expectation: ExpectationSpec) -> bool:
    """One expectation in pandas (the types the benchmark spec uses)."""
    kwargs = dict(expectation.kwargs)
    kind = expectation.type
    if kind == "expect_table_row_count_to_be_between":
        return int(kwargs.get("min_value", 0)) <= len(frame)
    column = frame[kwargs["column"]]
    if kind == "expect_column_values_to_not_be_null":
        return not bool(column.isna().any())
    present = column.dropna()
    if kind == "expect_column_values_to_be_in_set":
        ok = present.isin(kwargs["value_set"])
    elif kind == "expect_column_values_to_be_between":
        ok = present.between(kwargs["min_value"], kwargs["max_value"])
    elif kind == "expect_column_values_to_be_unique":
        ok = ~present.duplicated(keep=False)
    else:
        raise ValueError(f"the baseline has no check for {kind}")
    return bool(ok.mean() >= float(kwargs.get("mostly", 1.0))) if len(ok) else True


def split_codes(keys: pd.Series, spec: DatasetSpec) -> np.ndarray:
    """0 train, 1 validation, 2 test: the same hash of the key the pipeline uses."""
    hashed = pd.util.hash_pandas_object(keys.astype("object"), index=False).to_numpy()
    u = (hashed % np.uint64(10_000)).astype("float64") / 10_000.0
    test, validation = spec.split.test, spec.split.validation
    return np.where(u < test, 2, np.where(u < test + validation, 1, 0))


def features(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for name in spec.feature_columns:
        column = spec.columns[name]
        if column.type == "category":
            categories = column.categories or sorted(frame[name].dropna().unique())
            out[name] = pd.Categorical(frame[name], categories=categories)
        else:
            out[name] = frame[name].astype("float64")
    return out


def run(spec_path: str, source: str) -> dict[str, Any]:
    import xgboost
    from sklearn.metrics import roc_auc_score

    spec = load_spec(spec_path)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    files = sorted(glob.glob(os.path.join(source, "*.parquet")))
    frame = pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()
    timings["read"] = time.perf_counter() - started

    started = time.perf_counter()
    failed = [e.type for e in spec.all_expectations() if not check(frame, e)]
    timings["check"] = time.perf_counter() - started

    started = time.perf_counter()
    x = features(frame, spec)
    y = frame[spec.target].astype("int32")
    codes = split_codes(frame[spec.key or ""], spec)
    timings["prepare"] = time.perf_counter() - started

    started = time.perf_counter()
    threads = os.cpu_count() or 1
    dtrain = xgboost.QuantileDMatrix(
        x[codes == 0], y[codes == 0], enable_categorical=True, nthread=threads
    )
    dvalid = xgboost.QuantileDMatrix(
        x[codes == 1], y[codes == 1], ref=dtrain, enable_categorical=True, nthread=threads
    )
    params = {**spec.xgboost_params(), "nthread": threads}
    booster = xgboost.train(
        params,
        dtrain,
        num_boost_round=spec.training.num_boost_round,
        evals=[(dtrain, "train"), (dvalid, "validation")],
        early_stopping_rounds=spec.training.early_stopping_rounds,
        verbose_eval=False,
    )
    test = xgboost.DMatrix(x[codes == 2], enable_categorical=True, nthread=threads)
    scores = booster.predict(test, iteration_range=(0, booster.best_iteration + 1))
    auc = float(roc_auc_score(y[codes == 2], scores))
    timings["train"] = time.perf_counter() - started
    return {
        "rows": len(frame),
        "frame_bytes": int(frame.memory_usage(deep=True).sum()),
        "failed_checks": failed,
        "best_iteration": int(booster.best_iteration),
        "roc_auc": auc,
        "timings": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True)
    parser.add_argument("--source", required=True)
    args = parser.parse_args()
    print(json.dumps(run(args.spec, args.source)))


if __name__ == "__main__":
    main()
