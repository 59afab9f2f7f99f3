"""`mlops run` as a user runs it: a separate process, JSON on stdout, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

MLOPS = str(Path(sys.executable).parent / "mlops")


def run_cli(args: list[str], api: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": api}
    return subprocess.run([MLOPS, *args], env=env, capture_output=True, text=True, timeout=540)


def test_run_prints_a_summary_and_exits_0(
    prefect_api: str, demo_spec: str, demo_source: Path, lake: str
) -> None:
    # (`--json` output is read by tests/integration/test_crash_resume.py.)
    done = run_cli(
        ["run", "--spec", demo_spec, "--source", str(demo_source), "--lake", lake], prefect_api
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "decision  promoted to champion: no champion yet" in done.stdout
    assert "6,000 rows from 4/4 accepted landing files (4 read now, 0 quarantined)" in done.stdout

    # The champion scores files: JSON on stdout, the drift verdict, the realized metric
    # (the human summary is checked in tests/flows/test_score_flow.py).
    args = ["score", "--spec", demo_spec, "--source", str(demo_source), "--lake", lake]
    scored = run_cli([*args, "--json", "--no-progress"], prefect_api)
    assert scored.returncode == 0, scored.stderr[-3000:]
    result = json.loads(scored.stdout)
    assert (result["rows_scored"], result["files_new"], result["champion"]) == (6000, 4, True)
    assert result["drift"]["status"] == "ok" and result["drift"]["realized"] > 0.8


def test_score_without_a_champion_exits_1_naming_the_model(
    prefect_api: str, demo_spec: str, demo_source: Path, tmp_path: Path
) -> None:
    done = run_cli(
        ["score", "--spec", demo_spec, "--source", str(demo_source), "--lake", str(tmp_path)],
        prefect_api,
    )
    assert done.returncode == 1 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: model 'customers' has no champion in {tmp_path} yet"), last


def test_a_missing_source_exits_2_with_one_line_before_any_flow_run(
    prefect_api: str, demo_spec: str, tmp_path: Path
) -> None:
    done = run_cli(
        [
            "run",
            "--spec",
            demo_spec,
            "--source",
            str(tmp_path / "missing"),
            "--lake",
            str(tmp_path / "lake"),
        ],
        prefect_api,
    )
    # Caught before Prefect starts: one line, the usage-error code, no flow run.
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing'}: landing location does not exist"
    ]


def test_unreachable_cluster_exits_1_naming_the_address(
    prefect_api: str, demo_spec: str, demo_source: Path, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    lake = tmp_path / "lake"
    done = run_cli(
        [
            "run",
            "--spec",
            demo_spec,
            "--source",
            str(demo_source),
            "--lake",
            str(lake),
            "--cluster",
            address,
        ],
        prefect_api,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot reach the Dask scheduler at {address}: "), last
    assert not lake.exists()
