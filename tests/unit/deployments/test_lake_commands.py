"""``mlops lake gc|verify|backup`` and ``mlops lineage`` on a lake written by release 0.1:
a lake from before lake operations verifies, gc and lineage read it, and mistakes exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deployments.cli import main
from tests.support.release_lakes import copy_release_lake

pytestmark = pytest.mark.timeout(120)


def test_a_lake_of_release_0_1_verifies_quick_and_deep_and_names_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = copy_release_lake("0.1.0", tmp_path)
    assert main(["lake", "verify", "--lake", str(old.lake)]) == 0
    assert main(["lake", "verify", "--lake", str(old.lake), "--deep"]) == 0
    out = capsys.readouterr().out
    # Its 4 partitions and its model carry no recorded hash: deep mode decodes and loads them.
    assert "5 rehashed (deep)" in out and out.rstrip().endswith("ok")
    (partition,) = list((old.lake / "datasets" / "customers" / "partitions").glob("*.parquet"))[:1]
    partition.write_bytes(partition.read_bytes()[:100])
    assert main(["lake", "verify", "--lake", str(old.lake), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    (problem,) = report["problems"]
    assert problem["uri"].endswith(partition.name) and "bytes," in problem["problem"]
    # A pointer that is not JSON is one more named problem, not a traceback.
    (old.lake / "models" / "customers" / "aliases.json").write_text("{not json")
    assert main(["lake", "verify", "--lake", str(old.lake), "--json"]) == 1
    problems = {
        p["uri"].rsplit("/", 1)[1]: p["problem"]
        for p in json.loads(capsys.readouterr().out)["problems"]
    }
    assert problems["aliases.json"].startswith("unreadable pointer (not JSON)")


def test_gc_dry_run_lists_by_kind_deletes_nothing_and_a_bad_policy_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = copy_release_lake("0.1.0", tmp_path)
    before = sorted(p for p in old.lake.rglob("*") if p.is_file())
    tight = ["--keep-days", "0", "--grace-hours", "0", "--keep-datasets", "1"]
    assert main(["lake", "gc", "--lake", str(old.lake), *tight, "--list"]) == 0
    out = capsys.readouterr().out
    assert "keeps     customers: champion " in out
    # The champion's data and its cached results are all still needed: nothing to delete.
    assert "would delete (dry run; --apply deletes): 0 object(s), 0 B" in out
    assert sorted(p for p in old.lake.rglob("*") if p.is_file()) == before
    for flag, value, why in [
        ("--keep-history", "0", "must be at least 1; a policy keeping no champion"),
        ("--keep-datasets", "0", "must be at least 1; the latest dataset version"),
        ("--grace-hours", "-1", "greater than or equal to 0"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(["lake", "gc", "--lake", str(old.lake), flag, value, "--apply"])
        assert exit_.value.code == 2
        assert f"error: {flag}: " in (err := capsys.readouterr().err) and why in err
    assert sorted(p for p in old.lake.rglob("*") if p.is_file()) == before


def test_backup_and_lineage_of_an_old_lake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = copy_release_lake("0.1.0", tmp_path)
    copy = tmp_path / "backup"
    assert main(["lake", "backup", "--lake", str(old.lake), "--to", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "verified  ok" in out
    assert (copy / "lake.json").exists() and (old.lake / "lake.json").exists()
    assert main(["lake", "backup", "--lake", str(old.lake), "--to", str(copy)]) == 0
    assert "copied    0 of" in capsys.readouterr().out  # nothing new: nothing copied
    shutil.rmtree(copy / "models")
    assert main(["lake", "backup", "--lake", str(old.lake), "--to", str(copy)]) == 0
    assert "copied    4 of" in capsys.readouterr().out  # the model folder again
    assert main(["lineage", "customers", "--lake", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "(champion)" in out and "4 landing file(s) in 4 partition(s)" in out
    assert "scored     never" in out
    assert main(["lineage", "customers@nope", "--lake", str(copy)]) == 1
    assert "has no version 'nope'" in capsys.readouterr().err
