"""Garbage collection beside running work, with real processes on one lake: gc waits for a
pipeline run that uses the lake, a gc SIGKILLed while it waits leaves nothing behind, and
the run and the next gc both complete, the run with everything it wrote."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from blocks.registry import ModelRegistry
from tasks.demo_data import write_demo_data
from tasks.lake import Lake
from tasks.lakeops.verify import verify
from tasks.runtime.lease import active_runs
from tests.support.paths import DEMO_SPEC

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]
MLOPS = str(Path(sys.executable).parent / "mlops")
# Keep only the champion: everything else a run leaves is garbage at once.
TIGHTEST = ["--keep-history", "1", "--keep-days", "0", "--keep-datasets", "1", "--grace-hours", "0"]


def _wait_for(condition: object, *, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_gc_waits_for_a_running_pipeline_then_deletes_what_the_run_left_unreferenced(
    prefect_api: str, tmp_path: Path
) -> None:
    data = yaml.safe_load(DEMO_SPEC.read_text())
    data["training"]["num_boost_round"] = 40
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    write_demo_data(str(landing), rows=4500, files=3, seed=1)
    # Short leases: a gc killed while it held the lake to itself holds up the next one 6 s.
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "MLOPS_LEASE_SECONDS": "6"}
    run_args = [MLOPS, "run", "--spec", str(spec), "--source", str(landing), "--lake", str(lake)]
    gc_args = [MLOPS, "lake", "gc", "--lake", str(lake), "--apply", "--wait", "300", *TIGHTEST]
    # A fresh lake: the run's ingest writes partitions no manifest names yet, the first
    # thing a gc without the lake to itself would take (the grace period is 0).
    run = subprocess.Popen(
        [*run_args, "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _wait_for(lambda: active_runs(Lake(str(lake))), what="the run to mark the lake in use")
    # A gc started now waits; SIGKILLed while it waits, it leaves no lease nor record.
    killed = subprocess.Popen(gc_args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    said = [killed.stderr.readline().decode() for _ in range(1)]  # type: ignore[union-attr]
    while said[-1] and "waiting for" not in said[-1]:
        said.append(killed.stderr.readline().decode())  # type: ignore[union-attr]
    assert "run(s) using the lake" in said[-1], said
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    gc = subprocess.Popen(gc_args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ran_out, ran_err = run.communicate(timeout=300)
    assert run.returncode == 0, ran_err.decode()[-3000:]
    swept, swept_err = gc.communicate(timeout=120)
    assert gc.returncode == 0, swept_err.decode()[-3000:]
    # It waited for the pipeline (and the stage flow the pipeline was in when gc looked).
    said = swept_err.decode()
    assert re.search(r"waiting for \d run\(s\) using the lake:", said), said
    assert "ml-pipeline run customers-" in said, said
    assert "deleted:" in swept.decode()
    assert not list((lake / "runs" / "gc").glob(".tmp-*"))

    # The run completed on everything it wrote: its model is registered, its data whole.
    champion = ModelRegistry(lake=str(lake)).champion("customers")
    assert champion is not None and champion in ran_out.decode()
    where = Lake(str(lake))
    assert verify(where, deep=True).ok
    # What gc deleted is what the run left unreferenced, its released training lease;
    # nothing of what it made.
    (record,) = (lake / "runs" / "gc").glob("*.json")
    deleted = json.loads(record.read_text())
    assert deleted["applied"] and set(deleted["garbage"]) == {"lease"}, deleted["garbage"]
    again = subprocess.run(
        [MLOPS, "lake", "gc", "--lake", str(lake), *TIGHTEST], capture_output=True, timeout=60
    )
    assert again.returncode == 0 and "would delete (dry run; --apply deletes): 0 object(s)" in (
        again.stdout.decode()
    ), again.stdout.decode()
