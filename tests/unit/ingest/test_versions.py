"""Dataset version manifests: content-addressed, and refused under another schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import LakeError
from tasks.ingest.versions import load_version, write_version
from tasks.lake import Lake
from tasks.spec import DatasetSpec, load_spec
from tests.support.ingesting import ingest_paths, ingest_source, with_ingest

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def spec(demo_spec: str) -> DatasetSpec:
    return with_ingest(load_spec(demo_spec), partition_rows=1500)


def test_version_is_content_addressed(spec: DatasetSpec, demo_source: Path, tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    outcomes = ingest_source(demo_source, spec, lake)
    first = write_version(spec=spec, lake=lake, source=str(demo_source), outcomes=outcomes)
    assert len(first.new_partitions) == 4 and first.version.rows == 6000
    assert len(first.version.files) == 4
    again = write_version(
        spec=spec,
        lake=lake,
        source=str(demo_source),
        outcomes=ingest_source(demo_source, spec, lake),
    )
    assert first.version.version == again.version.version
    assert again.new_partitions == [] and len(again.reused_partitions) == 4
    fewer_outcome = ingest_paths(sorted(demo_source.iterdir())[:3], spec, lake)
    fewer = write_version(spec=spec, lake=lake, source=str(demo_source), outcomes=[fewer_outcome])
    assert fewer.version.version != first.version.version
    # "latest" follows the last written version; both stay readable.
    assert load_version(lake, spec.name).version == fewer.version.version
    assert load_version(lake, spec.name, first.version.version) == first.version
    with pytest.raises(LakeError, match="no such dataset version"):
        load_version(lake, spec.name, "0000")
    with pytest.raises(LakeError, match="has no versions yet"):
        load_version(lake, "other")


def test_versions_of_another_schema_are_refused(
    spec: DatasetSpec, demo_source: Path, tmp_path: Path
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    outcome = ingest_paths([demo_source / "customers-0000.csv"], spec, lake)
    write_version(spec=spec, lake=lake, source="s", outcomes=[outcome])
    assert load_version(lake, spec.name, schema_hash=spec.schema_hash()).rows == 1500
    with pytest.raises(LakeError, match="ingested with other columns or types"):
        load_version(lake, spec.name, schema_hash="something-else")
