"""Drifted, labeled scoring files join the training landing, only when the spec asks, drift
is at the alert level and there is a folder to add them to; copies are whole or absent."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from tasks.ingest.landing import list_landing
from tasks.records import DataProfile, DriftReport, ScoredSplit, ScoringResult
from tasks.score.feedback import SCORED_FOLDER, add_to_training, copy_file, labeled_files
from tasks.spec import DatasetSpec, load_spec
from tests.support.paths import DEMO_SPEC

pytestmark = pytest.mark.timeout(60)


def spec(retrain_with_scored: bool) -> DatasetSpec:
    demo = load_spec(str(DEMO_SPEC))
    monitoring = demo.monitoring.model_copy(update={"retrain_with_scored": retrain_with_scored})
    return demo.model_copy(update={"monitoring": monitoring})


def split(*labeled: str) -> ScoredSplit:
    return ScoredSplit(
        split_id="s",
        files=[],
        model_version="v1",
        predictions_uri=None,
        rows=10,
        profile=DataProfile(rows=10, features={}, rows_of="scored"),
        labeled_files=list(labeled),
    )


def result(status: str, training_source: str) -> ScoringResult:
    return ScoringResult(
        dataset="customers",
        model_version="v1",
        champion=True,
        rows_scored=10,
        files_total=2,
        files_new=2,
        files_cached=0,
        files_quarantined=0,
        predictions=[],
        manifest_uri="file:///lake/predictions/customers/v1/manifests/run123.json",
        drift=DriftReport(model_name="customers", model_version="v1", rows=10, status=status),
        training_source=training_source,
    )


@pytest.fixture
def batch(tmp_path: Path) -> list[str]:
    """Two scored files of one name in two folders (both labeled)."""
    files = []
    for folder in ("a", "b"):
        path = tmp_path / "scoring" / folder / "part.csv"
        path.parent.mkdir(parents=True)
        path.write_text(f"x,y\n{folder},1\n")
        files.append(path.as_uri())
    return files


def test_labeled_files_of_an_alert_are_added_under_scored(tmp_path: Path, batch: list[str]) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "old.csv").write_text("x,y\nz,0\n")
    added = add_to_training(spec(True), result("alert", str(landing)), [split(*batch)])
    assert len(added) == 2 and all(f"/{SCORED_FOLDER}/run123/" in uri for uri in added)
    assert sorted(Path(uri.removeprefix("file://")).read_text() for uri in added) == [
        "x,y\na,1\n",
        "x,y\nb,1\n",
    ]
    # The retraining's landing listing sees the old file and both new ones, no temporaries.
    assert len(list_landing(str(landing))) == 3
    # Copying again (a retried task) writes nothing new.
    assert add_to_training(spec(True), result("alert", str(landing)), [split(*batch)]) == added


@pytest.mark.parametrize(
    ("policy", "status", "labeled", "source"),
    [
        (False, "alert", True, "folder"),  # the policy is off
        (True, "warn", True, "folder"),  # not at the alert level
        (True, "alert", False, "folder"),  # no file carries the target on every row
        (True, "alert", True, ""),  # the model's dataset version is gone
        (True, "alert", True, "file"),  # trained from one file: nowhere to add
    ],
)
def test_nothing_is_added_unless_everything_allows_it(
    tmp_path: Path, batch: list[str], policy: bool, status: str, labeled: bool, source: str
) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    (folder / "one.csv").write_text("x,y\nz,0\n")
    training = {"folder": str(folder), "file": str(folder / "one.csv"), "": ""}[source]
    scored = [split(*batch)] if labeled else [split()]
    assert add_to_training(spec(policy), result(status, training), scored) == []
    assert sorted(p.name for p in folder.iterdir()) == ["one.csv"]


def test_files_are_listed_once_in_order_and_a_copy_is_whole(tmp_path: Path) -> None:
    assert labeled_files([split("b", "a"), split("a")]) == ["a", "b"]
    source = tmp_path / "big.csv"
    source.write_bytes(b"x" * (3 << 20))
    target = tmp_path / "out" / "big.csv"
    assert copy_file(str(source), str(target)) == target.as_uri()
    assert target.read_bytes() == source.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["big.csv"]  # no _big.csv.part left
    # Across two stores the bytes are streamed.
    with fsspec.open("memory://scoring/small.csv", "wb") as fh:
        fh.write(b"x,y\n1,1\n")
    other = tmp_path / "out" / "small.csv"
    assert copy_file("memory://scoring/small.csv", str(other)) == other.as_uri()
    assert other.read_bytes() == b"x,y\n1,1\n"
