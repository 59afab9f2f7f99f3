"""``make bench``: the pipeline side by side with a plain script, at several data sizes,
in three landing layouts and two modes.

For each size (``benchmarks/bench.yaml``'s 30 columns; the same rows as 16 Parquet files,
2,000 small files and one large file), measured in the same run, ``--repeats`` times,
medians reported:

  a     baseline   the plain script (benchmarks/baseline.py) on the 16 files: read, check,
                   xgboost.train
  b     cold       ``mlops run`` end to end on an empty lake (16 files), as a user runs it
  c     warm       the same command again, no new data
  d     new file   one more landing file (1/16 of the data), run again
  e     train      the training stage alone (benchmarks/train_stage.py) vs a's read+train
  f     2000       b on the same rows in 2,000 files
  g     1 file     b on the same rows in one file
  s     score base the plain scoring script (benchmarks/score_baseline.py): pyarrow read,
                   inplace_predict on all cores, a Parquet file, with the champion of b-d
  h     score      ``mlops score`` of the 16 files with that champion (predictions, checks,
                   drift), as a user runs it; ``i``: the same again (nothing new)

b to g run in each mode: ``embedded`` (no Prefect server: each run starts Prefect's
ephemeral API, what ``make run`` and ``mlops run`` do out of the box) and ``server`` (one
``prefect server start`` for the whole benchmark, as a user with a Prefect server has).
Every measurement is a fresh process, timed from start to exit, with the peak memory of it
and all its children (Dask workers included), as the sum of their PSS (a page shared by
several of them counted once; the RSS sum is reported beside it). Prints a table and
writes JSON.

    python -m benchmarks.run --sizes 1M,4M --repeats 1 --out .mlops/bench/results.json
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
SHAPES = {"16 files": FILES, "2000 files": 2000, "1 file": 1}
MODES = ("embedded", "server")
# At 4M rows, in each mode (warm/cold: with a server; warm on the embedded default: 15 s).
TARGETS = {
    "cold/baseline": 1.25,
    "warm/cold": 0.05,
    "warm seconds (embedded)": 15.0,
    "new file/cold": 0.2,
    "2000 files/16 files": 1.3,
    "1 file/16 files": 1.1,
    "peak memory/data": 3.0,
    "score/plain score": 1.25,
    "drift share of scoring": 0.10,
}


@dataclass
class Measured:
    seconds: float
    peak_bytes: int  # PSS of the process tree (see tree_memory)
    peak_rss_bytes: int
    output: dict[str, Any] = field(default_factory=dict)


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * scale)


def tree_memory(process: psutil.Process) -> tuple[int, int]:
    """Memory of ``process`` and its children: the sum of their proportional set sizes (each
    shared page counted once across them), and the plain sum of their RSS.

    RSS counts a page once per process that maps it: the libraries every Python process
    loads, and the pages Dask workers share with the forkserver they were forked from. PSS
    splits each shared page among its sharers, so the tree's sum is the memory it holds;
    where the platform has no PSS, RSS stands in.
    """
    pss = rss = 0
    try:
        processes = [process, *process.children(recursive=True)]
    except psutil.Error:  # it (or a child) exited between two calls
        return 0, 0
    for p in processes:
        with suppress(psutil.Error):
            info = p.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
    return pss, rss


def measure(command: list[str], *, env: dict[str, str], cwd: str) -> Measured:
    """Run ``command`` to completion; wall time, peak memory of its process tree (PSS, and
    RSS alongside), last JSON line."""
    started = time.perf_counter()
    child = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process = psutil.Process(child.pid)
    peak = peak_rss = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_rss
        while not done.is_set():
            pss, rss = tree_memory(process)
            peak, peak_rss = max(peak, pss), max(peak_rss, rss)
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
    return Measured(seconds=seconds, peak_bytes=peak, peak_rss_bytes=peak_rss, output=output)


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


def landing(work: Path, rows: int, files: int) -> Path:
    """The benchmark's rows as ``files`` files (written once, kept for later runs)."""
    folder = work / f"{rows}" / f"landing-{files}"
    if not (folder / f"part-{files - 1:04d}.parquet").exists():
        shutil.rmtree(folder, ignore_errors=True)
        write_files(str(folder), rows=rows, files=files, seed=1)
    return folder


def bench_mode(
    rows: int, *, mode: str, work: Path, env: dict[str, str], baseline: Measured
) -> dict[str, Any]:
    """b to g at one size in one mode."""
    python, cwd = sys.executable, str(Path(__file__).resolve().parent.parent)
    mlops = [python, "-m", "deployments.cli", "run", "--spec", SPEC, "--no-progress", "--json"]
    sources = {shape: landing(work, rows, files) for shape, files in SHAPES.items()}
    extra = work / f"{rows}" / "extra"
    if not (extra / f"part-{FILES:04d}.parquet").exists():
        write_files(str(extra), rows=rows // FILES, files=1, seed=1, first=FILES)
    base = work / f"{rows}" / mode
    shutil.rmtree(base, ignore_errors=True)

    def pipeline(shape: str, lake: Path) -> Measured:
        run = measure(
            [*mlops, "--source", str(sources[shape]), "--lake", str(lake)], env=env, cwd=cwd
        )
        fitted = not run.output.get("model_reused", True)
        version = run.output.get("model_version") if fitted else None
        run.output["training_phases"] = training_phases(lake, version)
        return run

    measured: dict[str, Measured] = {}
    lake = base / "lake"
    measured["b"] = pipeline("16 files", lake)
    measured["c"] = pipeline("16 files", lake)
    # The training stage alone: same validated lake, empty registry.
    trained = base / "lake-train"
    shutil.copytree(lake, trained, ignore=shutil.ignore_patterns("models", "checkpoints"))
    measured["e"] = measure(
        [python, "-m", "benchmarks.train_stage", "--spec", SPEC, "--lake", str(trained)],
        env=env,
        cwd=cwd,
    )
    shutil.rmtree(trained, ignore_errors=True)
    new_file = sources["16 files"] / f"part-{FILES:04d}.parquet"
    shutil.copy(extra / new_file.name, new_file)
    try:
        measured["d"] = pipeline("16 files", lake)
    finally:
        new_file.unlink()
    measured.update(bench_scoring(source=sources["16 files"], lake=lake, env=env, work=base))
    measured["f"] = pipeline("2000 files", base / "lake-2000")
    measured["g"] = pipeline("1 file", base / "lake-1")
    shutil.rmtree(base, ignore_errors=True)
    return summarize(measured, baseline)


def training_phases(lake: Path, version: str | None, dataset: str = "bench") -> dict[str, float]:
    """Where the training of the run's model went (load, fit, evaluate, SHAP, ...), from its
    metadata; empty when the run registered no model."""
    if not version:
        return {}
    metadata = lake / "models" / dataset / "versions" / version / "metadata.json"
    if not metadata.exists():
        return {}
    timings: dict[str, float] = json.loads(metadata.read_text()).get("timings", {})
    return timings


def champion_folder(lake: Path, dataset: str = "bench") -> Path:
    aliases = json.loads((lake / "models" / dataset / "aliases.json").read_text())
    return lake / "models" / dataset / "versions" / aliases["champion"]


def bench_scoring(
    *, source: Path, lake: Path, env: dict[str, str], work: Path
) -> dict[str, Measured]:
    """s, h and i: the plain scoring script, then ``mlops score`` cold and again, on the
    lake's champion."""
    python, cwd = sys.executable, str(Path(__file__).resolve().parent.parent)
    work.mkdir(parents=True, exist_ok=True)
    measured = {
        "s": measure(
            [
                python,
                "-m",
                "benchmarks.score_baseline",
                "--spec",
                SPEC,
                "--source",
                str(source),
                "--model",
                str(champion_folder(lake)),
                "--out",
                str(work / "plain-predictions.parquet"),
            ],
            env=env,
            cwd=cwd,
        )
    }
    score = [python, "-m", "deployments.cli", "score", "--spec", SPEC, "--no-progress", "--json"]
    for key in ("h", "i"):
        measured[key] = measure(
            [*score, "--source", str(source), "--lake", str(lake)], env=env, cwd=cwd
        )
    return measured


def scoring_ratios(measured: dict[str, Measured]) -> dict[str, float]:
    """h against s, i against h, and the share of the splits' time spent profiling the
    rows for drift."""
    seconds = {k: m.seconds for k, m in measured.items()}
    phases = measured["h"].output.get("split_seconds", {})
    return {
        "score/plain score": seconds["h"] / seconds["s"],
        "score again/score": seconds["i"] / seconds["h"],
        "drift share of scoring": phases.get("profile", 0.0) / max(phases.get("total", 0.0), 1e-9),
    }


def summarize(measured: dict[str, Measured], baseline: Measured) -> dict[str, Any]:
    seconds = {k: m.seconds for k, m in measured.items()}
    baseline_train = sum(baseline.output["timings"][p] for p in ("read", "prepare", "train"))
    data_bytes = baseline.output["frame_bytes"]
    peak = max((m.peak_bytes for k, m in measured.items() if k in "bcdefg"), default=0)
    peak_rss = max((m.peak_rss_bytes for k, m in measured.items() if k in "bcdefg"), default=0)
    ratios = scoring_ratios(measured)
    return {
        "seconds": seconds,
        "peak_bytes": {k: m.peak_bytes for k, m in measured.items()},
        "peak_rss_bytes": {k: m.peak_rss_bytes for k, m in measured.items()},
        "ratios": {
            "cold/baseline": seconds["b"] / baseline.seconds,
            "train/baseline train": seconds["e"] / baseline_train,
            "warm/cold": seconds["c"] / seconds["b"],
            "new file/cold": seconds["d"] / seconds["b"],
            "2000 files/16 files": seconds["f"] / seconds["b"],
            "1 file/16 files": seconds["g"] / seconds["b"],
            "peak memory/data": peak / data_bytes,
            # The old measure, every process's RSS added (shared pages counted per process).
            "peak RSS sum/data": peak_rss / data_bytes,
            **ratios,
        },
        "split_seconds": measured["h"].output.get("split_seconds", {}),
        "roc_auc": {k: m.output.get("metrics", {}).get("roc_auc") for k, m in measured.items()},
        # Where the pipeline's time went (its own stage clock), for each run.
        "stage_seconds": {
            k: m.output.get("stage_seconds", {}) for k, m in measured.items() if k != "e"
        },
        # And the training stage's phases, from the metadata of the model each run trained
        # (none for a run that reused a registered model).
        "training_phases": {
            k: m.output["training_phases"]
            for k, m in measured.items()
            if m.output.get("training_phases")
        },
    }


def bench_size(
    rows: int, *, repeats: int, work: Path, envs: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """All measurements at one size; medians of the repeats (the last repeat's details)."""
    python, cwd = sys.executable, str(Path(__file__).resolve().parent.parent)
    source = landing(work, rows, FILES)
    runs: list[dict[str, Any]] = []
    for _ in range(repeats):
        baseline = measure(
            [python, "-m", "benchmarks.baseline", "--spec", SPEC, "--source", str(source)],
            env=envs["server"],
            cwd=cwd,
        )
        modes = {
            mode: bench_mode(rows, mode=mode, work=work, env=env, baseline=baseline)
            for mode, env in envs.items()
        }
        runs.append({"baseline": baseline, "modes": modes})
    last = runs[-1]
    result: dict[str, Any] = {
        "rows": rows,
        "repeats": repeats,
        "baseline_seconds": statistics.median(r["baseline"].seconds for r in runs),
        "baseline_timings": last["baseline"].output["timings"],
        "baseline_roc_auc": last["baseline"].output["roc_auc"],
        "data_bytes": last["baseline"].output["frame_bytes"],
        "modes": {},
    }
    for mode in envs:
        seconds = {
            k: statistics.median(r["modes"][mode]["seconds"][k] for r in runs)
            for k in last["modes"][mode]["seconds"]
        }
        ratios = {
            k: statistics.median(r["modes"][mode]["ratios"][k] for r in runs)
            for k in last["modes"][mode]["ratios"]
        }
        result["modes"][mode] = {**last["modes"][mode], "seconds": seconds, "ratios": ratios}
    return result


def scoring_lines(results: list[dict[str, Any]]) -> list[str]:
    """s, h, i and their ratios, per size and mode."""
    head = (
        f"{'rows':>10} {'mode':>9} {'s plain':>8} {'h score':>8} {'i again':>8} "
        f"{'h/s':>5} {'i/h':>5} {'drift':>6}"
    )
    lines = ["", head, "-" * len(head)]
    for r in results:
        for mode, m in r["modes"].items():
            s, q = m["seconds"], m["ratios"]
            if "h" not in s:
                continue
            lines.append(
                f"{r['rows']:>10,} {mode:>9} {s['s']:>8.1f} {s['h']:>8.1f} {s['i']:>8.1f} "
                f"{q['score/plain score']:>5.2f} {q['score again/score']:>5.2f} "
                f"{q['drift share of scoring']:>6.3f}"
            )
    return lines


def scoring_only(rows: int, *, work: Path, envs: dict[str, dict[str, str]]) -> dict[str, Any]:
    """s, h and i at one size in each mode, on a lake trained once by ``mlops run``."""
    python, cwd = sys.executable, str(Path(__file__).resolve().parent.parent)
    source = landing(work, rows, FILES)
    lake = work / f"{rows}" / "scoring-lake"
    if not (lake / "models" / "bench" / "aliases.json").exists():
        measure(
            [
                python,
                "-m",
                "deployments.cli",
                "run",
                "--spec",
                SPEC,
                "--no-progress",
                "--json",
                "--source",
                str(source),
                "--lake",
                str(lake),
            ],
            env=envs["server"],
            cwd=cwd,
        )
    modes = {}
    for mode, env in envs.items():
        # Each mode scores from scratch: the predictions of the other are not reused.
        shutil.rmtree(lake / "predictions", ignore_errors=True)
        shutil.rmtree(lake / "runs" / "results" / "score-split", ignore_errors=True)
        measured = bench_scoring(source=source, lake=lake, env=env, work=work / f"{rows}" / mode)
        modes[mode] = {
            "seconds": {k: m.seconds for k, m in measured.items()},
            "ratios": scoring_ratios(measured),
            "split_seconds": measured["h"].output.get("split_seconds", {}),
        }
    return {"rows": rows, "modes": modes}


def table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'rows':>10} {'mode':>9} {'a base':>7} {'b cold':>7} {'c warm':>7} {'d +file':>7} "
        f"{'e train':>7} {'f 2000':>7} {'g 1':>7} {'b/a':>5} {'c/b':>6} {'d/b':>5} "
        f"{'f/b':>5} {'g/b':>5} {'e/a_tr':>6} {'mem':>5}  auc a/b"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        for mode, m in r["modes"].items():
            s, q = m["seconds"], m["ratios"]
            if "b" not in s:
                continue
            lines.append(
                f"{r['rows']:>10,} {mode:>9} {r['baseline_seconds']:>7.1f} {s['b']:>7.1f} "
                f"{s['c']:>7.1f} {s['d']:>7.1f} {s['e']:>7.1f} {s['f']:>7.1f} {s['g']:>7.1f} "
                f"{q['cold/baseline']:>5.2f} {q['warm/cold']:>6.3f} {q['new file/cold']:>5.2f} "
                f"{q['2000 files/16 files']:>5.2f} {q['1 file/16 files']:>5.2f} "
                f"{q['train/baseline train']:>6.2f} {q['peak memory/data']:>5.2f}  "
                f"{r['baseline_roc_auc']:.4f}/{m['roc_auc']['b'] or 0:.4f}"
            )
    lines += scoring_lines(results)
    lines.append("targets at 4M rows: " + ", ".join(f"{k} <= {v}" for k, v in TARGETS.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,4M")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", default=".mlops/bench")
    parser.add_argument("--out", default=".mlops/bench/results.json")
    parser.add_argument(
        "--scoring-only",
        action="store_true",
        help="train once (with the server), then measure only s, h and i in both modes",
    )
    args = parser.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = []
    quiet = {"PREFECT_LOGGING_LEVEL": "WARNING"}
    with prefect_server(str(work / "prefect-server")) as api:
        envs = {
            # No PREFECT_API_URL: each run starts the ephemeral API, as `mlops run` does.
            "embedded": {
                **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
                "PREFECT_HOME": str(work / "prefect-embedded"),
                **quiet,
            },
            "server": {
                **os.environ,
                "PREFECT_API_URL": api,
                "PREFECT_HOME": str(work / "prefect-server"),
                **quiet,
            },
        }
        # A first ephemeral API creates its database (once per PREFECT_HOME, as a user's
        # first `make run` does): not part of any run measured below.
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from prefect import flow; flow(name='bench-warm-up')(lambda: 0)()",
            ],
            env=envs["embedded"],
            check=True,
            capture_output=True,
        )
        for size in args.sizes.split(","):
            if args.scoring_only:
                results.append(scoring_only(parse_size(size), work=work, envs=envs))
                continue
            result = bench_size(parse_size(size), repeats=args.repeats, work=work, envs=envs)
            results.append(result)
            print("\n".join(table([result]).splitlines()[2:-1]), flush=True)
    print(table(results))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": results, "targets": TARGETS}, indent=2))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
