"""SIGKILL of the whole run (flow process and its Dask workers) mid-training, then the same
command again: it waits for the killed run's training lease to expire, reuses every finished
partition and validation result, resumes training from the last checkpoint, and nothing in
the lake is half-written. And two runs started together both complete, training once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blocks.registry import ModelRegistry
from tasks.train.checkpoint import CheckpointState
from tests.support.paths import DEMO_SPEC

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]
MLOPS = str(Path(sys.executable).parent / "mlops")


def checkpoint_rounds(lake: Path) -> int:
    states = list((lake / "runs" / "checkpoints").rglob("state.json"))
    if not states:
        return 0
    try:
        return CheckpointState.model_validate_json(states[0].read_text()).rounds
    except ValueError:  # the state file is replaced atomically; never seen half-written
        raise AssertionError(f"half-written checkpoint state {states[0]}") from None


def test_a_killed_run_resumes_where_it_stopped(
    prefect_api: str, spec_variant, demo_source: Path, tmp_path: Path
) -> None:
    spec = spec_variant(
        training={
            "params": {"eta": 0.05, "max_depth": 4},
            "num_boost_round": 400,
            "early_stopping_rounds": None,
            "checkpoint_every": 5,
        }
    )
    lake = tmp_path / "lake"
    command = [MLOPS, "run", "--spec", spec, "--source", str(demo_source), "--lake", str(lake)]
    # A short lease: the killed run holds its training lease until it expires.
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "MLOPS_LEASE_SECONDS": "6"}
    # Its own session: the kill takes the flow process and every Dask worker it spawned.
    run = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 400
    while checkpoint_rounds(lake) < 10:
        assert run.poll() is None, f"the run ended before training: {run.stderr.read()[-3000:]}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    run.stderr.close()  # type: ignore[union-attr]
    killed_at = checkpoint_rounds(lake)
    assert 10 <= killed_at < 400

    # Nothing committed is half-written: every manifest, report and model metadata parses,
    # and the killed run registered no model and moved no alias.
    for path in lake.rglob("*.json"):
        json.loads(path.read_text())
    for path in (lake / "runs" / "results").rglob("*"):  # cached task results
        if path.is_file():
            assert json.loads(path.read_text())["result"], path
    registry = ModelRegistry(lake=str(lake))
    assert registry.versions("customers") == [] and registry.champion("customers") is None

    again = subprocess.run(
        [*command, "--json"], env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    # The killed run never released its training lease: this run took the next generation
    # of it once it had expired (it waits when it gets there sooner), and released that.
    [lease] = (lake / "runs" / "leases" / "train" / "customers").rglob("*.json")
    record = json.loads(lease.read_text())
    assert lease.name == "000000000002.json" and record["released"]
    assert record["pid"] != run.pid
    result = json.loads(again.stdout)
    # Every partition and validation result of the killed run was reused.
    assert result["new_partitions"] == 0 and result["files_read"] == 0
    assert result["files_accepted"] == 4
    assert result["promoted"]
    (metadata,) = registry.versions("customers")
    assert metadata.resumed_from_round is not None and metadata.resumed_from_round >= killed_at
    assert metadata.best_iteration == 399
    assert not list((lake / "runs" / "checkpoints").rglob("*.ubj"))


def test_runs_started_together_both_complete_and_train_once(
    prefect_api: str, demo_source: Path, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    command = [
        *(MLOPS, "run", "--spec", str(DEMO_SPEC), "--source", str(demo_source)),
        *("--lake", str(lake), "--json", "--no-progress"),
    ]
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    first = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(3)  # as a schedule and a trigger a few seconds apart
    second = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    outputs = [run.communicate(timeout=600) for run in (first, second)]
    for run, (_, err) in zip((first, second), outputs, strict=True):
        assert run.returncode == 0, err[-3000:]
    results = [json.loads(out) for out, _ in outputs]
    # One model version, registered once; the later run reused it.
    (metadata,) = ModelRegistry(lake=str(lake)).versions("customers")
    assert {r["model_version"] for r in results} == {metadata.version}
    assert sorted(r["model_reused"] for r in results) == [False, True]
    assert sorted(r["promoted"] for r in results) == [False, True]
    assert ModelRegistry(lake=str(lake)).champion("customers") == metadata.version
    reuser = outputs[[r["model_reused"] for r in results].index(True)][1]
    assert "already registered for these inputs; reusing it" in reuser
