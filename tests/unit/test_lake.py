from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import pytest

from tasks.lake import Lake

pytestmark = pytest.mark.timeout(30)


def test_layout_and_uris(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    assert lake.partition("d", "p1").endswith("lake/datasets/d/partitions/p1.parquet")
    assert lake.url_of(lake.version("d", "v1")).startswith("file://")
    assert Lake("s3://bucket/prefix").path("x") == "bucket/prefix/x"
    assert Lake("s3://bucket/prefix").url_of("bucket/prefix/x") == "s3://bucket/prefix/x"


def test_a_write_that_dies_before_the_rename_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(str(tmp_path))
    path = lake.path("aliases.json")
    lake.write_json(path, {"champion": "v1"})

    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        lake.write_json(path, {"champion": "v2"})
    assert lake.read_json(path) == {"champion": "v1"}
    assert [p.name for p in tmp_path.iterdir()] == ["aliases.json"]


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    path = lake.path("a", "b.json")
    lake.write_json(path, {"v": 1})
    lake.write_json(path, {"v": 2})
    assert lake.read_json(path) == {"v": 2}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.json"]


def test_listing_skips_in_flight_temporaries_and_missing_folders(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.write_bytes(lake.path("d", "x.json"), b"{}")
    (tmp_path / "d" / ".tmp-123-y.json").write_bytes(b"{")
    assert [Path(p).name for p in lake.list_files(lake.path("d"), ".json")] == ["x.json"]
    assert lake.list_files(lake.path("absent")) == []


def test_sweep_removes_only_temporaries_old_enough_to_have_lost_their_writer(
    tmp_path: Path,
) -> None:
    lake = Lake(str(tmp_path))
    lake.write_bytes(lake.path("runs", "results", "t", "key"), b"{}")
    orphan = tmp_path / "runs" / "results" / "t" / ".tmp-dead-key2"
    orphan.write_bytes(b"{")
    two_hours_ago = time.time() - 7200
    os.utime(orphan, (two_hours_ago, two_hours_ago))
    in_flight = tmp_path / "datasets" / ".tmp-live-manifest.json"
    in_flight.parent.mkdir()
    in_flight.write_bytes(b"{")

    assert lake.sweep_temporaries() == [str(orphan)]
    assert not orphan.exists() and in_flight.exists()
    assert (tmp_path / "runs" / "results" / "t" / "key").read_bytes() == b"{}"
    assert lake.sweep_temporaries(older_than_s=0) == [str(in_flight)]
    assert Lake(str(tmp_path / "absent")).sweep_temporaries() == []


def test_lake_pickles_as_its_uri_not_its_filesystem(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    blob = pickle.dumps(lake)
    assert b"LocalFileSystem" not in blob
    copy = pickle.loads(blob)
    assert copy.path("x") == lake.path("x") and copy.fs.exists(str(tmp_path))
