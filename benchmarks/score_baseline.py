"""The plain scoring script ``mlops score`` is compared with: pyarrow read of every file,
XGBoost's ``inplace_predict`` on all cores, one Parquet file of predictions.

    python -m benchmarks.score_baseline --spec benchmarks/bench.yaml --source DIR \\
        --model LAKE/models/bench/versions/V --out FILE.parquet
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.spec import load_spec


def run(spec_path: str, source: str, model: str, out: str) -> dict[str, Any]:
    import xgboost

    spec = load_spec(spec_path)
    layout = json.loads((Path(model) / "metadata.json").read_text())["layout"]
    timings: dict[str, float] = {}
    started = time.perf_counter()
    files = sorted(glob.glob(os.path.join(source, "*.parquet")))
    frame = pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()
    timings["read"] = time.perf_counter() - started

    started = time.perf_counter()
    inputs = pd.DataFrame(index=frame.index)
    for name in layout["features"]:
        if layout["feature_types"][name] == "category":
            inputs[name] = pd.Categorical(frame[name], categories=layout["categories"][name])
        else:
            inputs[name] = frame[name].astype("float32")
    booster = xgboost.Booster(model_file=str(Path(model) / "model.ubj"))
    booster.set_param({"nthread": os.cpu_count() or 1})
    probability = np.asarray(booster.inplace_predict(inputs))
    timings["predict"] = time.perf_counter() - started

    started = time.perf_counter()
    classes = np.asarray(layout["classes"], dtype=object)
    table = pa.table(
        {
            spec.key or "row": frame[spec.key] if spec.key else np.arange(len(frame)),
            f"probability_{classes[1]}": probability,
            "prediction": classes[(probability >= 0.5).astype(int)],
        }
    )
    pq.write_table(table, out, compression="zstd")
    timings["write"] = time.perf_counter() - started
    return {"rows": len(frame), "timings": timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--model", required=True, help="a model version's folder in the lake")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    print(json.dumps(run(args.spec, args.source, args.model, args.out)))


if __name__ == "__main__":
    main()
