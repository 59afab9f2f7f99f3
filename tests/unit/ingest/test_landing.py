"""Listing the landing zone: what counts as a landing file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import SourceError
from tests.support.landing import landing_uris

pytestmark = pytest.mark.timeout(30)


def test_discovery_finds_supported_files_and_ignores_the_rest(tmp_path: Path) -> None:
    for name in ["a.csv", "b.CSV.GZ", "sub/c.parquet", "notes.txt", ".hidden.csv", "_SUCCESS.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    found = [Path(u).name for u in landing_uris(str(tmp_path))]
    assert found == ["a.csv", "b.CSV.GZ", "c.parquet"]
    assert landing_uris(str(tmp_path / "a.csv"))[0].endswith("/a.csv")


def test_missing_and_empty_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="landing location does not exist"):
        landing_uris(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no data")
    with pytest.raises(SourceError, match=r"empty: no landing files found"):
        landing_uris(str(tmp_path / "empty"))


def test_files_in_hidden_or_underscore_folders_are_in_flight(tmp_path: Path) -> None:
    for name in ["ok/a.csv", "_temporary/0/part-0.parquet", ".staging/x.csv", "ok/_b.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert [Path(u).name for u in landing_uris(str(tmp_path))] == ["a.csv"]
