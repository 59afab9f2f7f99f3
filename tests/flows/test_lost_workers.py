"""A Dask worker process killed (SIGKILL) in the middle of each stage: the stage still
finishes with the right result, and nothing in the lake is lost or written twice."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from blocks.registry import ModelRegistry
from flows.ingest import ingest_flow
from flows.train import train_flow
from flows.validate import validate_flow
from tasks.demo_data import write_demo_data
from tasks.ingest.versions import load_version
from tasks.lake import Lake
from tasks.records import ModelMetadata
from tasks.spec import load_spec
from tasks.train.checkpoint import Checkpoints
from tasks.train.distributed import train_distributed
from tasks.train.plan import plan_training
from tests.support.processes import dask_worker_processes

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


@contextmanager
def kill_a_worker_when(ready: Callable[[], bool], *, timeout: float = 240) -> Iterator[list[int]]:
    """SIGKILL one worker process of the cluster started inside the block, as soon as
    ``ready()`` says the stage is mid-work. Yields the list the killed pid is added to."""
    before = dask_worker_processes()
    killed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            new = sorted(dask_worker_processes() - before)
            if new and ready():
                psutil.Process(new[0]).kill()
                killed.append(new[0])
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield killed
    finally:
        stop.set()
        watcher.join(timeout=10)


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve landing files: enough tasks that a worker dies with work in hand."""
    out = tmp_path_factory.mktemp("landing-many")
    write_demo_data(str(out), rows=12_000, files=12, seed=21)
    return out


@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One lake for the module: each test runs the stages before its own (reused when an
    earlier test already ran them), so the suite ingests and validates these files once."""
    return str(tmp_path_factory.mktemp("lost-workers-lake") / "lake")


def lake_files(lake: str, folder: str, suffix: str) -> list[Path]:
    """Complete files only: a writer's temporary file is not part of the lake yet."""
    found = (Path(lake) / folder).rglob(f"*{suffix}")
    return sorted(p for p in found if p.is_file() and not p.name.startswith(".tmp-"))


def assert_only_temporaries_left_over(lake: str) -> None:
    """The kill can land between a file's temporary copy and its rename. Such leftovers are
    skipped by readers and swept by the next ingest; sweeping them now leaves a clean lake."""
    Lake(lake).sweep_temporaries(older_than_s=0)
    assert not [p for p in Path(lake).rglob(".tmp-*")]


# Partitions of 64 KiB: each landing file is a split (one ingest task) of its own.
SMALL = {"ingest": {"partition_size": "64KiB"}}


def test_ingest_survives_a_killed_worker(
    spec_variant: Callable[..., str], many_files: Path, shared_lake: str
) -> None:
    lake = shared_lake
    partitions = "datasets/customers/partitions"
    with kill_a_worker_when(lambda: bool(lake_files(lake, partitions, ".parquet"))) as killed:
        result = ingest_flow(spec=spec_variant(**SMALL), source=str(many_files), lake=lake)
    assert killed, "the stage ended before a worker could be killed"
    version = result.version
    assert len(version.files) == 12 and version.rows == 12_000
    # Every file's rows exactly once, none quarantined, no partition written twice.
    rows: dict[str, int] = {}
    for partition in version.partitions:
        for segment in partition.segments:
            rows[segment.source_uri] = rows.get(segment.source_uri, 0) + segment.rows
    assert sorted(rows.values()) == [1000] * 12
    assert len(lake_files(lake, partitions, ".parquet")) == len(version.partitions)
    assert_only_temporaries_left_over(lake)
    assert version.quarantined == []


def test_validate_survives_a_killed_worker(
    spec_variant: Callable[..., str], many_files: Path, shared_lake: str
) -> None:
    lake = shared_lake
    spec = spec_variant(**SMALL)
    version = ingest_flow(spec=spec, source=str(many_files), lake=lake).version
    # A validate-partition result record in the lake: the stage is under way.
    results = "runs/results/validate-partition"
    with kill_a_worker_when(lambda: bool(lake_files(lake, results, ""))) as killed:
        report = validate_flow(spec=spec, lake=lake)
    assert killed, "the stage ended before a worker could be killed"
    assert report.passed and report.accepted_files == 12 and report.rejected == []
    assert len(report.accepted) == len(version.partitions) > 12
    # One whole record per partition: none torn, none missing.
    records = lake_files(lake, results, "")
    assert len(records) == len(version.partitions)
    assert all(json.loads(p.read_bytes()) for p in records)
    assert_only_temporaries_left_over(lake)


def test_training_survives_a_killed_worker_and_resumes_from_its_checkpoint(
    many_files: Path, shared_lake: str, spec_variant, dask_client
) -> None:
    lake = shared_lake
    # Many small rounds, checkpointed often: the kill lands mid-training.
    spec = spec_variant(
        **SMALL,
        training={
            "params": {"eta": 0.05, "max_depth": 4},
            "num_boost_round": 200,
            "early_stopping_rounds": None,
            "checkpoint_every": 5,
        },
    )
    ingest_flow(spec=spec, source=str(many_files), lake=lake)
    report = validate_flow(spec=spec, lake=lake)
    dataset = load_spec(spec)
    manifest = load_version(Lake(lake), dataset.name)
    plan = plan_training(spec=dataset, version=manifest, report=report)
    checkpoints = Checkpoints(lake, dataset.name, plan.model_version)

    def mid_training() -> bool:
        found = checkpoints.latest()
        return found is not None and found[1].rounds >= 10

    with kill_a_worker_when(mid_training) as killed:
        candidate = train_flow(spec=spec, lake=lake)
    assert killed, "training ended before a worker could be killed"
    folder = Path(lake) / "models/customers/versions" / candidate.version
    metadata = ModelMetadata.model_validate_json((folder / "metadata.json").read_text())
    # The retry continued from a checkpoint, not from round 0, and finished all rounds.
    assert metadata.resumed_from_round is not None and metadata.resumed_from_round >= 10
    assert metadata.best_iteration == 199
    assert checkpoints.latest() is None  # cleared once the model was registered
    # Same result as an uninterrupted training on the same rows, within tolerance.
    whole = train_distributed(
        dask_client,
        uris=plan.partition_uris,
        layout=plan.layout,
        params=plan.params,
        num_boost_round=200,
        early_stopping_rounds=None,
    )
    assert candidate.metrics["roc_auc"] == pytest.approx(whole.metrics["roc_auc"], abs=0.005)


def test_scoring_survives_a_killed_worker_with_no_row_missing_or_twice(
    spec_variant: Callable[..., str], many_files: Path, shared_lake: str
) -> None:
    import pyarrow.parquet as pq

    from flows.score import score_flow

    lake = shared_lake
    spec = spec_variant(**SMALL)
    # Any model of these files will do: the one the training test left, else a new one.
    registered = ModelRegistry(lake=lake).versions("customers")
    if registered:
        version = registered[-1].version
    else:
        ingest_flow(spec=spec, source=str(many_files), lake=lake)
        validate_flow(spec=spec, lake=lake)
        version = train_flow(spec=spec, lake=lake).version
    folder = f"predictions/customers/{version}"
    with kill_a_worker_when(lambda: bool(lake_files(lake, folder, ".parquet"))) as killed:
        result = score_flow(spec=spec, source=str(many_files), lake=lake, model=version)
    assert killed, "the stage ended before a worker could be killed"
    assert result.rows_scored == 12_000 and result.files_quarantined == 0
    assert len(result.predictions) == 12  # one file per split, each written once
    rows = [
        (source, row)
        for uri in result.predictions
        for source, row in zip(
            *pq.read_table(uri.removeprefix("file://"), columns=["source_uri", "row"])
            .to_pydict()
            .values(),
            strict=True,
        )
    ]
    assert len(rows) == len(set(rows)) == 12_000
    assert sorted(lake_files(lake, folder, ".parquet")) == sorted(
        Path(u.removeprefix("file://")) for u in result.predictions
    )
    assert_only_temporaries_left_over(lake)
