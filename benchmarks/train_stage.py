"""The training stage alone, as ``ml_pipeline`` runs it: ``train_flow`` on an ingested and
validated lake whose model registry is empty. Prints one JSON line with its wall time.

    python -m benchmarks.train_stage --spec benchmarks/bench.yaml --lake DIR
"""

from __future__ import annotations

import argparse
import json
import time

from flows.train import train_flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True)
    parser.add_argument("--lake", required=True)
    args = parser.parse_args()

    started = time.perf_counter()
    candidate = train_flow(spec=args.spec, lake=args.lake)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "metrics": candidate.metrics}))


if __name__ == "__main__":
    main()
