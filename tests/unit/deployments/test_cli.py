from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from blocks.registry import ModelRegistry
from deployments.cli import main
from tasks.records import DataProfile, FeatureProfile
from tests.support.models import metadata, model_bytes
from tests.support.paths import DEMO_SPEC

pytestmark = pytest.mark.timeout(60)


def test_demo_data_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["demo-data", "--out", str(tmp_path), "--rows", "300", "--files", "3", "--defects"])
        == 0
    )
    out = capsys.readouterr().out
    assert "customers-0001.csv.gz\t100 rows\tdefect: wrong-types" in out
    assert len(list(tmp_path.iterdir())) == 3


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--spec", "x.yaml"])
    assert exc.value.code == 2
    assert "--source" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["run", "--spec", "x", "--source", "y", "--lake", "z", "--cache-expiration-days", "0"])
    assert exc.value.code == 2
    assert "--cache-expiration-days: 0: must be more than 0 days" in capsys.readouterr().err


def test_bad_demo_arguments_are_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo-data", "--out", str(tmp_path), "--rows", "1", "--files", "2"]) == 1
    assert capsys.readouterr().err.startswith("error: --rows (1) must be at least --files (2)")


def test_registry_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = str(tmp_path)
    registry = ModelRegistry(lake=lake)
    profile = DataProfile(
        rows=8,
        features={"a": FeatureProfile(kind="numeric", rows=8, nulls=2, edges=[0.5], counts=[3, 3])},
    )
    registry.register(metadata("v1", 0.8), model_bytes())
    registry.register(metadata("v2", 0.85), model_bytes(), profile=profile)
    registry.set_champion("m", "v1", reason="first")
    registry.set_champion("m", "v2", reason="better")
    capsys.readouterr()

    assert main(["registry", "--lake", lake, "list", "m"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0].startswith("  v1") and lines[1].startswith("* v2") and "roc_auc=0.8500" in lines[1]
    )
    assert main(["registry", "--lake", lake, "list", "m", "--json"]) == 0
    assert [r["champion"] for r in json.loads(capsys.readouterr().out)] == [False, True]
    assert main(["registry", "--lake", lake, "show", "m"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "v2"
    assert shown["profile"]["features"]["a"] == {
        "kind": "numeric",
        "null_fraction": 0.25,
        "edges": [0.5],
    }
    assert main(["registry", "--lake", lake, "show", "m", "v1"]) == 0
    assert json.loads(capsys.readouterr().out)["profile"] is None
    assert main(["registry", "--lake", lake, "rollback", "m"]) == 0
    assert "champion of m: v2 -> v1" in capsys.readouterr().out
    assert main(["registry", "--lake", lake, "promote", "m", "v9"]) == 1
    assert "has no version 'v9'" in capsys.readouterr().err
    assert registry.champion("m") == "v1"


def test_webhook_gateway_and_setup_refuse_to_start_without_what_they_need(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLOPS_WEBHOOK_SECRET", raising=False)
    assert main(["webhook", "serve", "--port", "1"]) == 1
    assert "no webhook secret: set MLOPS_WEBHOOK_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("MLOPS_WEBHOOK_SECRET", "0123456789abcdef")
    assert main(["webhook", "serve", "--dataset", "bucket/prefix=x"]) == 1
    assert "expected s3://bucket/prefix/=dataset-name" in capsys.readouterr().err
    assert main(["webhook", "serve", "--port", "1"]) == 1
    assert "refusing to start without a source allowlist" in capsys.readouterr().err
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Whatever API the test session runs, `mlops setup` must name the one it sets up.
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert main(["setup"]) == 2
    assert "set PREFECT_API_URL" in capsys.readouterr().err


def uvicorn_children() -> set[int]:
    found = set()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "uvicorn" in " ".join(child.cmdline()):
                found.add(child.pid)
    return found


def test_a_wrong_spec_source_or_lake_is_one_line_and_exit_2_before_any_flow_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = str(DEMO_SPEC)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (
            ["run", "--spec", "nope.yaml", "--source", str(empty), "--lake", str(tmp_path)],
            ["nope.yaml: dataset spec not found", "no landing files found"],
        ),
        (
            ["run", "--spec", spec, "--source", "/no/such/landing", "--lake", str(tmp_path / "l")],
            ["/no/such/landing: landing location does not exist"],
        ),
        (
            ["run", "--spec", spec, "--source", str(empty), "--lake", str(a_file)],
            ["the lake must be a folder, not a file"],
        ),
        (
            ["score", "--spec", spec, "--source", str(empty), "--lake", "foo://bar"],
            ["foo://bar: not a lake location"],
        ),
        (
            ["run", "--spec", str(a_file), "--source", str(empty), "--lake", str(tmp_path)],
            [f"{a_file}: "],
        ),
    ]
    servers_before = uvicorn_children()  # the session's test API, if it started
    for argv, messages in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert all(line.startswith("error: ") for line in lines), err
        for message in messages:
            assert message in err, (argv, err)
        assert "Beginning flow run" not in err and "Traceback" not in err
        # The temporary API the command started first is stopped with it.
        assert uvicorn_children() <= servers_before, argv


def test_the_command_exits_with_mains_status_and_its_whole_output() -> None:
    """`mlops` leaves without tearing the interpreter down (deployments.cli.command): the
    exit status and everything written still come through, a pipe included."""

    def mlops(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "deployments.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    helped = mlops("--help")
    assert helped.returncode == 0 and "Landing files to a safely promoted" in helped.stdout
    assert helped.stdout.rstrip().endswith("show this help message and exit")
    assert mlops("no-such-command").returncode == 2
    refused = mlops("run", "--spec", "nope.yaml", "--source", "/no/such", "--lake", "/tmp/x")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[0] == "error: nope.yaml: dataset spec not found"
