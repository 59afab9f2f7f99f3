"""Lake operations on a lake that several real pipeline runs wrote: files added, changed and
removed, promotions and a rollback, a scoring run. gc, verify, backup and restore, lineage."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from blocks.registry import ModelRegistry
from flows.lake import backup_flow, gc_flow, verify_flow
from flows.pipeline import ml_pipeline
from flows.score import score_flow
from tasks.demo_data import make_frame, write_demo_data
from tasks.errors import LakeError
from tasks.ingest.versions import load_version
from tasks.lake import Lake
from tasks.lakeops.backup import backup
from tasks.lakeops.identity import LAKE_FORMAT, ensure_identity
from tasks.lakeops.inventory import inventory
from tasks.lakeops.lineage import lineage, render
from tasks.lakeops.mark import lake_refs, mark
from tasks.lakeops.policy import RetentionPolicy
from tasks.lakeops.sweep import collect_garbage, in_sweep_order, sweep
from tasks.lakeops.verify import verify
from tasks.records import DatasetVersion, PipelineResult
from tests.support.paths import DEMO_SPEC

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

# Keep the champion and one rollback target, the latest dataset version, nothing for age.
TIGHT = RetentionPolicy(keep_history=2, keep_days=0, keep_datasets=1, grace_hours=0)


@dataclass
class Built:
    """A lake after four pipeline runs (files added, changed, removed, then nothing new), two
    promotions by hand, a rollback and a scoring run."""

    root: Path
    spec: str
    landing: Path
    scoring: Path
    runs: list[PipelineResult]
    # Every stage runs on the session's cluster (the address of its scheduler): this module
    # is about the lake, not about starting clusters.
    cluster: str

    def copy(self, to: Path) -> str:
        shutil.copytree(self.root / "lake", to)
        return str(to)


def _write(path: Path, *, seed: int, offset: int, rows: int = 1500) -> None:
    """A landing CSV of customers whose ids start at ``offset`` (unique across files)."""
    frame = make_frame(rows, seed=seed, offset=offset)
    frame.to_csv(path, index=False, date_format="%Y-%m-%d")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, prefect_api: str, dask_client: Any) -> Built:
    root = tmp_path_factory.mktemp("lake-ops")
    spec_data = yaml.safe_load(DEMO_SPEC.read_text())
    spec_data["training"]["num_boost_round"] = 40
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_data, sort_keys=False))
    landing, lake = root / "landing", str(root / "lake")
    write_demo_data(str(landing), rows=4500, files=3, seed=1)
    cluster = str(dask_client.scheduler.address)
    run = lambda: ml_pipeline(  # noqa: E731
        spec=str(spec), source=str(landing), lake=lake, cluster=cluster
    )
    runs = [run()]
    _write(landing / "added-0001.csv", seed=2, offset=1_000_000)  # a file added,
    _write(landing / "customers-0000.csv", seed=3, offset=2_000_000)  # one changed
    runs.append(run())
    (landing / "added-0001.csv").unlink()  # one removed
    runs.append(run())
    registry = ModelRegistry(lake=lake)
    for result in runs[1:]:
        registry.promote("customers", result.model_version, reason="test: by hand")
    registry.rollback("customers", reason="test: rollback")  # back to runs[1]'s model
    runs.append(run())  # warm: nothing new (its model is runs[2]'s)
    write_demo_data(str(root / "scoring"), rows=2000, files=2, seed=9)
    score_flow(spec=str(spec), source=str(root / "scoring"), lake=lake, cluster=cluster)
    return Built(
        root=root,
        spec=str(spec),
        landing=landing,
        scoring=root / "scoring",
        runs=runs,
        cluster=cluster,
    )


def _partitions(version: DatasetVersion) -> set[str]:
    return {f"datasets/customers/partitions/{p.partition_id}.parquet" for p in version.partitions}


def test_gc_deletes_exactly_what_no_kept_model_needs_and_the_lake_still_works(
    built: Built, tmp_path: Path
) -> None:
    lake_uri = built.copy(tmp_path / "lake")
    lake = Lake(lake_uri)
    registry = ModelRegistry(lake=lake_uri)
    runs = built.runs
    assert len({r.dataset_version for r in runs}) == 3  # added and changed, removed, warm
    assert runs[3].model_version == runs[2].model_version
    # The alias history, newest first: runs[1] (rolled back to), runs[2], runs[1], runs[0].
    champion = registry.champion("customers")
    assert champion == runs[1].model_version
    kept_models = {runs[1].model_version, runs[2].model_version}
    kept_data = {runs[1].dataset_version, runs[2].dataset_version}
    gone_models = {r.model_version for r in runs} - kept_models
    gone_data = {r.dataset_version for r in runs} - kept_data
    assert gone_models == {runs[0].model_version} and gone_data == {runs[0].dataset_version}

    dry = gc_flow(lake=lake_uri, policy=TIGHT)
    assert not dry.applied and dry.record_uri == ""
    garbage = set(dry.paths)
    kinds = {o.path: o.kind for o in inventory(lake)}
    by_kind: dict[str, set[str]] = {}
    for path in garbage:
        by_kind.setdefault(kinds[path], set()).add(path)
    versions = {v: load_version(lake, "customers", v) for v in kept_data | gone_data}
    kept_partitions = set().union(*(_partitions(versions[v]) for v in kept_data))
    gone_partitions = set().union(*(_partitions(versions[v]) for v in gone_data)) - kept_partitions
    # The three first files' partition, before one of them changed.
    assert len(gone_partitions) == 1
    assert by_kind["partition"] == gone_partitions
    assert by_kind["dataset-version"] == {
        f"datasets/customers/versions/{v}.json" for v in gone_data
    }
    assert {p.rsplit("/", 1)[1].split("-")[0] for p in by_kind["validation"]} == gone_data
    assert by_kind["model-metadata"] == {
        f"models/customers/versions/{v}/metadata.json" for v in gone_models
    }
    assert {p.split("/")[3] for p in by_kind["model-file"]} == gone_models
    assert {p.split("/")[3] for p in by_kind["report"]} == gone_models
    # Cached results go when they name what goes: the gone partition's ingest and validation.
    records = {p.split("/")[2] for p in by_kind["cache-record"]}
    assert records == {"ingest-split", "validate-partition"}
    assert set(by_kind) == {
        "partition", "dataset-version", "validation", "model-metadata", "model-file",
        "report", "cache-record", "lease",
    }  # fmt: skip
    assert dry.roots["customers"][0] == f"champion {champion}"
    assert all(lake.exists(lake.path(p)) for p in garbage)  # a dry run deletes nothing

    applied = gc_flow(lake=lake_uri, policy=TIGHT, apply=True)
    assert applied.applied and set(applied.paths) == garbage
    assert applied.garbage_bytes == dry.garbage_bytes > 0
    assert not any(lake.exists(lake.path(p)) for p in garbage)
    record = json.loads(Path(applied.record_uri.removeprefix("file://")).read_text())
    assert record["garbage"]["partition"]["objects"] == 1
    assert verify_flow(lake=lake_uri, deep=True).ok
    # No cached result left names anything that is gone.
    for o in inventory(lake):
        if o.kind == "cache-record":
            named = lake_refs(json.loads(lake.read_json(lake.path(o.path))["result"]))
            assert all(lake.exists(lake.path(p)) for p in named), o.path
    assert gc_flow(lake=lake_uri, policy=TIGHT).paths == []  # nothing more to find

    # Every kept champion of the history is a rollback target still, and re-scores.
    for target in (runs[2].model_version, runs[1].model_version):
        registry.promote("customers", target, reason="test: after gc")
        scored = score_flow(
            spec=built.spec,
            source=str(built.scoring),
            lake=lake_uri,
            rescore=True,
            cluster=built.cluster,
        )
        assert scored.model_version == target and scored.rows_scored == 2000
    # A warm re-run recomputes nothing: same data version, same model, no file read.
    again = ml_pipeline(
        spec=built.spec, source=str(built.landing), lake=lake_uri, cluster=built.cluster
    )
    assert (again.dataset_version, again.model_version) == (
        runs[3].dataset_version,
        runs[3].model_version,
    )
    assert again.files_read == 0 and again.new_partitions == 0 and again.model_reused
    assert verify(lake, deep=True).ok


def test_gc_of_the_default_policy_keeps_everything_young_and_refuses_to_keep_no_champion(
    built: Built,
) -> None:
    lake = Lake(str(built.root / "lake"))
    default = mark(lake, inventory(lake), RetentionPolicy(), now=time.time())
    assert default.garbage == []
    with pytest.raises(ValueError, match="must be at least 1"):
        RetentionPolicy(keep_history=0)


def test_verify_names_a_flipped_byte_and_a_missing_model_file(built: Built, tmp_path: Path) -> None:
    lake_uri = built.copy(tmp_path / "lake")
    lake = Lake(lake_uri)
    assert verify(lake, deep=True).ok
    version = load_version(lake, "customers", built.runs[-1].dataset_version)
    partition = Path(lake.partition("customers", version.partitions[0].partition_id))
    data = bytearray(partition.read_bytes())
    data[len(data) // 2] ^= 0x01
    partition.write_bytes(bytes(data))
    model = Path(lake.model("customers", "versions", built.runs[0].model_version, "model.ubj"))
    model.unlink()

    quick = verify(lake)
    assert [p.uri for p in quick.problems] == [lake.url_of(str(model))]
    assert "missing: model file" in quick.problems[0].problem
    deep = verify(lake, deep=True)
    problems = {p.uri: p.problem for p in deep.problems}
    assert set(problems) == {lake.url_of(str(partition)), lake.url_of(str(model))}
    assert "content differs from its SHA-256" in problems[lake.url_of(str(partition))]
    with pytest.raises(LakeError, match=r"2 problem\(s\)"):
        verify_flow(lake=lake_uri, deep=True)


def test_a_gc_cut_short_anywhere_leaves_a_lake_that_verifies_and_a_second_gc_finishes(
    built: Built, tmp_path: Path
) -> None:
    """The sweep's order is its crash safety: cut short after any kind of object (a SIGKILL,
    a lost connection), the lake verifies, and the next gc deletes exactly the rest."""
    source = built.copy(tmp_path / "source")
    lake = Lake(source)
    garbage = in_sweep_order(mark(lake, inventory(lake), TIGHT, now=time.time()).garbage)
    kinds = [o.kind for o in garbage]
    cuts = sorted({kinds.index(k) + 1 for k in kinds})
    assert len(cuts) >= 6
    for cut in cuts:
        copy = Lake(str(shutil.copytree(source, tmp_path / f"cut-{cut}")))
        sweep(copy, garbage[:cut])
        assert verify(copy).ok, (garbage[cut - 1].path, verify(copy).problems)
        finished = collect_garbage(copy, TIGHT, apply=True)
        assert finished.paths == [o.path for o in garbage[cut:]]
        assert verify(copy).ok


def test_backup_to_s3_then_restore_into_an_empty_place_is_a_warm_lake_with_the_same_champion(
    built: Built, tmp_path: Path, s3_endpoint: str
) -> None:
    import s3fs

    with pytest.raises(LakeError, match="bucket 'nowhere' does not exist"):
        backup(Lake(str(built.root / "lake")), Lake("s3://nowhere/customers"))
    s3fs.S3FileSystem(anon=False).mkdir("backups")
    lake_uri = built.copy(tmp_path / "lake")
    champion = ModelRegistry(lake=lake_uri).champion("customers")
    first = backup_flow(lake=lake_uri, to="s3://backups/customers")
    assert first.copied == first.objects > 0 and first.verified.ok
    # Incremental: nothing new, nothing copied; one new file, one copied.
    assert backup(Lake(lake_uri), Lake("s3://backups/customers")).copied == 0
    extra = Path(lake_uri) / "runs" / "notes.txt"
    extra.write_text("an operator's note")
    assert backup(Lake(lake_uri), Lake("s3://backups/customers")).copied == 1

    shutil.rmtree(lake_uri)
    restored = backup_flow(lake="s3://backups/customers", to=lake_uri)
    assert restored.verified.ok and extra.read_text() == "an operator's note"
    assert ModelRegistry(lake=lake_uri).champion("customers") == champion
    again = ml_pipeline(
        spec=built.spec, source=str(built.landing), lake=lake_uri, cluster=built.cluster
    )
    assert again.files_read == 0 and again.new_partitions == 0 and again.model_reused
    assert again.model_version == built.runs[-1].model_version

    # The backup is a lake of its own too: read where it is, its partitions are its own.
    in_s3 = load_version(Lake("s3://backups/customers"), "customers")
    assert all(p.uri.startswith("s3://backups/customers/") for p in in_s3.partitions)
    assert verify(Lake("s3://backups/customers"), deep=True).ok


def test_backup_refuses_a_foreign_target_and_a_lake_of_a_newer_format(
    built: Built, tmp_path: Path
) -> None:
    lake_uri = built.copy(tmp_path / "lake")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(LakeError, match=r"holds 1 file.*is not a lake"):
        backup(Lake(lake_uri), Lake(str(foreign)))
    other = tmp_path / "other-lake"
    ensure_identity(Lake(str(other)))
    with pytest.raises(LakeError, match="is another lake"):
        backup(Lake(lake_uri), Lake(str(other)))
    assert sorted(p.name for p in other.iterdir()) == ["lake.json"]  # nothing copied

    identity = Path(lake_uri) / "lake.json"
    document = json.loads(identity.read_text())
    identity.write_text(json.dumps({**document, "format": LAKE_FORMAT + 1}))
    for operation in (
        lambda: backup(Lake(lake_uri), Lake(str(tmp_path / "empty"))),
        lambda: gc_flow(lake=lake_uri, policy=TIGHT, apply=True),
        lambda: verify(Lake(lake_uri)),
    ):
        with pytest.raises(LakeError, match="newer release"):
            operation()
    assert not (tmp_path / "empty").exists()


def test_lineage_goes_from_the_model_to_its_landing_files_and_its_scoring_runs(
    built: Built,
) -> None:
    lake = Lake(str(built.root / "lake"))
    champion = ModelRegistry(lake=lake.uri).champion("customers")
    found = lineage(lake, "customers")
    assert found.version == champion and found.champion
    # The champion (runs[1]'s) learned from the added file, removed from the landing since.
    landing = {Path(f.uri.removeprefix("file://")).name: f.sha256 for f in found.files}
    assert set(landing) == {
        "customers-0000.csv", "customers-0001.csv.gz", "customers-0002.parquet", "added-0001.csv"
    }  # fmt: skip
    assert (
        landing["customers-0000.csv"]
        == hashlib.sha256((built.landing / "customers-0000.csv").read_bytes()).hexdigest()
    )
    reasons = [d.reason for d in found.decisions]
    assert "test: by hand" in reasons
    assert [r.rows for r in found.scoring_runs] == [2000]
    text = render(found)
    assert f"customers@{champion} (champion)" in text and "scored" in text
    first = lineage(lake, "customers", built.runs[0].model_version)
    assert not first.champion and first.scoring_runs == []
    assert any("replaced by" in line or "rollback" in line for line in render(first).splitlines())


class _Interrupted(Exception):
    pass


def test_a_backup_interrupted_between_any_two_phases_names_nothing_it_lacks(
    built: Built, tmp_path: Path
) -> None:
    source = Lake(built.copy(tmp_path / "lake"))
    target = Lake(str(tmp_path / "backup"))
    for stop_before in range(2, 6):  # after the identity, the data, the records, the manifests

        def phase(number: int, files: int, stop_before: int = stop_before) -> None:
            if number == stop_before:
                raise _Interrupted

        with pytest.raises(_Interrupted):
            backup(source, target, on_phase=phase)
        assert verify(target).ok, (stop_before, verify(target).problems)
    done = backup(source, target)
    assert done.verified.ok and done.copied > 0
    assert ModelRegistry(lake=target.uri).champion("customers") == ModelRegistry(
        lake=source.uri
    ).champion("customers")
