"""``make bench``: the pipeline side by side with a plain script, at several data sizes.

For each size (16 Parquet files, ``benchmarks/bench.yaml``'s 30 columns), measured in the
same run, ``--repeats`` times, medians reported:

  a  baseline   the plain script (benchmarks/baseline.py): read, check, xgboost.train
  b  cold       ``mlops run`` end to end on an empty lake, as a user runs it
  c  warm       the same command again, no new data
  d  new file   one more landing file (1/16 of the data), run again
  e  train      the training stage alone (benchmarks/train_stage.py) vs a's read+train

Every measurement is a fresh process, timed from start to exit, with the peak memory of it
and all its children (Dask workers included). Runs use one ``prefect server start`` for the
whole benchmark, as a user with a Prefect server does. Prints a table and writes JSON.

    python -m benchmarks.run --sizes 1M,2M,4M,8M --repeats 3 --out .mlops/bench/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.data import write_files

SPEC = str(Path(__file__).with_name("bench.yaml"))
FILES = 16
TARGETS = {
    "cold/baseline": 1.3,
    "train/baseline train": 1.15,
    "warm/cold": 0.05,
    "new file/cold": 0.2,
    "peak memory/data": 3.0,
    "8M/4M cold": 2.2,
}


@dataclass
class Measured:
    seconds: float
    peak_bytes: int
    output: dict[str, Any] = field(default_factory=dict)


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * scale)


def tree_rss(process: psutil.Process) -> int:
    total = 0
    try:
        processes = [process, *process.children(recursive=True)]
    except psutil.Error:  # it (or a child) exited between two calls
        return 0
    for p in processes:
        with suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def measure(command: list[str], *, env: dict[str, str], cwd: str) -> Measured:
    """Run ``command`` to completion; wall time, peak RSS of its process tree, last JSON line."""
    started = time.perf_counter()
    child = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process = psutil.Process(child.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {child.returncode}:\n{stderr[-4000:]}")
    # Each command prints one JSON document on stdout (logs go to stderr).
    output: dict[str, Any] = json.loads(stdout) if stdout.strip() else {}
    return Measured(seconds=seconds, peak_bytes=peak, output=output)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def prefect_server(home: str) -> Iterator[str]:
    """A ``prefect server start`` for the benchmark; its API URL."""
    import urllib.request

    port = free_port()
    env = {**os.environ, "PREFECT_HOME": home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("prefect server did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def bench_size(rows: int, *, repeats: int, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """All measurements at one size; medians and every sample."""
    landing = work / f"{rows}" / "landing"
    if not (landing / f"part-{FILES - 1:04d}.parquet").exists():
        write_files(str(landing), rows=rows, files=FILES, seed=1)
    extra = work / f"{rows}" / "extra"
    if not (extra / f"part-{FILES:04d}.parquet").exists():
        write_files(str(extra), rows=rows // FILES, files=1, seed=1, first=FILES)
    python, cwd = sys.executable, str(Path(__file__).resolve().parent.parent)
    mlops = [python, "-m", "deployments.cli", "run", "--spec", SPEC, "--no-progress", "--json"]
    samples: dict[str, list[Measured]] = {k: [] for k in ("a", "b", "c", "d", "e")}
    for _ in range(repeats):
        lake = work / f"{rows}" / "lake"
        shutil.rmtree(lake, ignore_errors=True)
        new_file = landing / extra.joinpath(f"part-{FILES:04d}.parquet").name
        new_file.unlink(missing_ok=True)
        run = [*mlops, "--source", str(landing), "--lake", str(lake)]
        samples["a"].append(
            measure(
                [python, "-m", "benchmarks.baseline", "--spec", SPEC, "--source", str(landing)],
                env=env,
                cwd=cwd,
            )
        )
        samples["b"].append(measure(run, env=env, cwd=cwd))
        samples["c"].append(measure(run, env=env, cwd=cwd))
        # The training stage alone: same validated lake, empty registry.
        trained = work / f"{rows}" / "lake-train"
        shutil.rmtree(trained, ignore_errors=True)
        shutil.copytree(lake, trained, ignore=shutil.ignore_patterns("models", "checkpoints"))
        samples["e"].append(
            measure(
                [python, "-m", "benchmarks.train_stage", "--spec", SPEC, "--lake", str(trained)],
                env=env,
                cwd=cwd,
            )
        )
        shutil.rmtree(trained, ignore_errors=True)
        shutil.copy(extra / new_file.name, new_file)
        samples["d"].append(measure(run, env=env, cwd=cwd))
        new_file.unlink()
    median = {k: statistics.median(m.seconds for m in v) for k, v in samples.items()}
    baseline_train = statistics.median(
        sum(m.output["timings"][p] for p in ("read", "prepare", "train")) for m in samples["a"]
    )
    data_bytes = samples["a"][0].output["frame_bytes"]
    peak = max(m.peak_bytes for k in ("b", "c", "d", "e") for m in samples[k])
    return {
        "rows": rows,
        "repeats": repeats,
        "seconds": median,
        "baseline_train_seconds": baseline_train,
        "data_bytes": data_bytes,
        "peak_bytes": {k: max(m.peak_bytes for m in v) for k, v in samples.items()},
        "ratios": {
            "cold/baseline": median["b"] / median["a"],
            "train/baseline train": median["e"] / baseline_train,
            "warm/cold": median["c"] / median["b"],
            "new file/cold": median["d"] / median["b"],
            "peak memory/data": peak / data_bytes,
        },
        "roc_auc": {
            "baseline": samples["a"][0].output["roc_auc"],
            "pipeline": samples["b"][0].output["metrics"]["roc_auc"],
        },
        "samples": {k: [m.seconds for m in v] for k, v in samples.items()},
        # Where the pipeline's time went (its own stage clock), for each run kind.
        "stage_seconds": {
            k: samples[k][0].output.get("stage_seconds", {}) for k in ("b", "c", "d")
        },
        "baseline_timings": samples["a"][0].output["timings"],
    }


def table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'rows':>10} {'a base':>8} {'b cold':>8} {'c warm':>8} {'d +file':>8} {'e train':>8} "
        f"{'b/a':>6} {'e/a_tr':>6} {'c/b':>6} {'d/b':>6} {'mem':>6}  auc a/b"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        s, q = r["seconds"], r["ratios"]
        lines.append(
            f"{r['rows']:>10,} {s['a']:>8.1f} {s['b']:>8.1f} {s['c']:>8.1f} {s['d']:>8.1f} "
            f"{s['e']:>8.1f} {q['cold/baseline']:>6.2f} {q['train/baseline train']:>6.2f} "
            f"{q['warm/cold']:>6.3f} {q['new file/cold']:>6.2f} {q['peak memory/data']:>6.2f}  "
            f"{r['roc_auc']['baseline']:.4f}/{r['roc_auc']['pipeline']:.4f}"
        )
    by_rows = {r["rows"]: r for r in results}
    if 4_000_000 in by_rows and 8_000_000 in by_rows:
        scaling = by_rows[8_000_000]["seconds"]["b"] / by_rows[4_000_000]["seconds"]["b"]
        lines.append(f"8M/4M cold time: {scaling:.2f}")
    lines.append("targets at 4M rows: " + ", ".join(f"{k} <= {v}" for k, v in TARGETS.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,2M,4M,8M")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=".mlops/bench")
    parser.add_argument("--out", default=".mlops/bench/results.json")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = []
    with prefect_server(str(work / "prefect")) as api:
        env = {
            **os.environ,
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(work / "prefect"),
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        for size in args.sizes.split(","):
            result = bench_size(parse_size(size), repeats=args.repeats, work=work, env=env)
            results.append(result)
            print(table([result]).splitlines()[-2], flush=True)
    print(table(results))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": results, "targets": TARGETS}, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
