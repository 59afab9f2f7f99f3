"""End to end: ml_pipeline as users call it, on real clusters and the session's Prefect API."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from blocks.registry import ModelRegistry
from flows.pipeline import ml_pipeline
from tasks.demo_data import make_frame, write_demo_data
from tasks.errors import SourceError, SpecError, TrainingError, ValidationFailed

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def lake_files(lake: str) -> set[str]:
    return {str(p.relative_to(lake)) for p in Path(lake).rglob("*") if p.is_file()}


def test_pipeline_twice_then_with_one_new_file(
    demo_spec: str, demo_source: Path, tmp_path: Path, lake: str
) -> None:
    landing = tmp_path / "landing"
    shutil.copytree(demo_source, landing)

    first = ml_pipeline(spec=demo_spec, source=str(landing), lake=lake)
    assert first.promoted and first.reason == "no champion yet"
    assert (first.files_total, first.files_accepted, first.files_read) == (4, 4, 4)
    # Four small files are one partition: the cost follows the bytes, not the files.
    assert (first.partitions_total, first.partitions_accepted, first.new_partitions) == (1, 1, 1)
    assert first.rows == 6000 and first.metrics["roc_auc"] > 0.8
    assert first.champion == first.model_version
    files_after_first = lake_files(lake)

    second = ml_pipeline(spec=demo_spec, source=str(landing), lake=lake)
    assert second.new_partitions == 0 and second.files_read == 0 and second.model_reused
    assert (second.dataset_version, second.model_version) == (
        first.dataset_version,
        first.model_version,
    )
    assert not second.promoted and second.champion == first.champion
    # Nothing was re-ingested, re-validated or retrained: a decision record was added, and
    # at most the run's own Dask reports (the same Data Docs pages were rewritten in place).
    added = lake_files(lake) - files_after_first
    decisions = {f for f in added if f.startswith("models/customers/decisions/")}
    assert len(decisions) == 1
    assert all(f.startswith("runs/reports/dask/") for f in added - decisions), added

    extra = tmp_path / "extra"
    write_demo_data(str(extra), rows=1500, files=1, seed=99)
    shutil.copy(extra / "customers-0000.csv", landing / "customers-9999.csv")
    third = ml_pipeline(spec=demo_spec, source=str(landing), lake=lake)
    # The new file is read alone and makes a partition of its own; the old one is kept.
    assert third.files_read == 1 and third.files_total == 5 and third.rows == 7500
    assert third.new_partitions == 1 and third.partitions_total == 2
    assert third.dataset_version != first.dataset_version
    assert third.model_version != first.model_version and not third.model_reused
    registry = ModelRegistry(lake=lake)
    assert registry.champion("customers") == third.champion
    assert len(registry.versions("customers")) == 2 and len(registry.decisions("customers")) == 3
    assert not [f for f in lake_files(lake) if "/.tmp-" in f]


def test_bad_input_fails_clearly_before_touching_anything(
    demo_spec: str, spec_variant, demo_source: Path, tmp_path: Path, lake: str
) -> None:
    with pytest.raises(SourceError, match="landing location does not exist"):
        ml_pipeline(spec=demo_spec, source=str(tmp_path / "nowhere"), lake=lake)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no landing files found"):
        ml_pipeline(spec=demo_spec, source=str(tmp_path / "empty"), lake=lake)
    bogus = spec_variant(expectations=[{"type": "expect_column_to_be_magic", "kwargs": {}}])
    with pytest.raises(SpecError, match=r"expectations\.0 \(expect_column_to_be_magic\)"):
        ml_pipeline(spec=bogus, source=str(demo_source), lake=lake)
    with pytest.raises(SpecError, match=r"columns\.age\.type"):
        ml_pipeline(
            spec=spec_variant(columns={"age": {"type": "number"}}),
            source=str(demo_source),
            lake=lake,
        )
    assert not Path(lake).exists()


def test_failed_runs_never_touch_the_champion(
    demo_spec: str, spec_variant, demo_source: Path, tmp_path: Path, lake: str, dask_client: Any
) -> None:
    # On the session's cluster as an existing scheduler (saves a cluster start per stage;
    # the first test above runs each stage on its own LocalCluster, as `make run` does).
    cluster = dask_client.scheduler.address
    good = ml_pipeline(spec=demo_spec, source=str(demo_source), lake=lake, cluster=cluster)
    registry = ModelRegistry(lake=lake)
    aliases = (Path(lake) / "models" / "customers" / "aliases.json").read_bytes()

    # A target with one class: ingested and validated, refused before training.
    one_class = tmp_path / "one-class"
    one_class.mkdir()
    frame = make_frame(3000, seed=5, offset=10_000_000).assign(churned=False)
    frame.to_csv(one_class / "all-stayed.csv", index=False, date_format="%Y-%m-%d")
    with pytest.raises(TrainingError, match=r"target 'churned' has 1 class\(es\) \(False\)"):
        ml_pipeline(spec=demo_spec, source=str(one_class), lake=lake, cluster=cluster)

    # Every partition failing validation.
    impossible = spec_variant(
        expectations=[
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "age", "min_value": 200},
            }
        ]
    )
    with pytest.raises(ValidationFailed, match="0 of 4 landing file"):
        ml_pipeline(spec=impossible, source=str(demo_source), lake=lake, cluster=cluster)

    assert registry.champion("customers") == good.champion
    assert (Path(lake) / "models" / "customers" / "aliases.json").read_bytes() == aliases
    assert [m.version for m in registry.versions("customers")] == [good.model_version]

    # A failure inside the promotion stage itself: the champion's stored model is damaged,
    # so it cannot be re-scored against a new candidate.
    landing = tmp_path / "landing"
    shutil.copytree(demo_source, landing)
    shutil.copy(one_class / "all-stayed.csv", landing / "more.csv")
    champion_file = (
        Path(lake) / "models" / "customers" / "versions" / good.model_version / "model.ubj"
    )
    champion_file.write_bytes(champion_file.read_bytes()[:100])
    with pytest.raises(Exception, match=r"(?i)xgboost|model|ubj|parse"):
        ml_pipeline(spec=demo_spec, source=str(landing), lake=lake, cluster=cluster)
    assert (Path(lake) / "models" / "customers" / "aliases.json").read_bytes() == aliases
    assert len(registry.versions("customers")) == 2  # the candidate is registered, not promoted
    assert registry.decisions("customers")[-1].candidate == good.model_version
