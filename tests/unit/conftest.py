from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.ingest import build_version, discover_sources, ingest_file
from tasks.lake import Lake
from tasks.models import DatasetVersion, ValidationReport
from tasks.spec import DatasetSpec, load_spec
from tasks.validate import build_report, validate_partition

from ..conftest import DEMO_SPEC


@dataclass(frozen=True)
class Ingested:
    spec: DatasetSpec
    lake: Lake
    version: DatasetVersion
    report: ValidationReport


@pytest.fixture(scope="session")
def ingested(demo_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    """The clean demo files ingested and validated by the plain stage functions."""
    spec = load_spec(str(DEMO_SPEC))
    lake = Lake(str(tmp_path_factory.mktemp("unit-lake")))
    outcomes = [
        ingest_file(source_uri=u, spec=spec, lake=lake) for u in discover_sources(str(demo_source))
    ]
    version = build_version(
        spec=spec, lake=lake, source=str(demo_source), outcomes=outcomes
    ).version
    results = [validate_partition(partition=p, spec=spec) for p in version.partitions]
    report = build_report(spec=spec, lake=lake, version=version, results=results)
    assert report.passed
    return Ingested(spec=spec, lake=lake, version=version, report=report)
