from __future__ import annotations

from pathlib import Path

import pytest

from tasks.ingest.partitions import ingest_file
from tasks.ingest.versions import write_version
from tasks.lake import Lake
from tasks.spec import load_spec
from tasks.validate.partition import validate_partition
from tasks.validate.report import write_report
from tests.support.ingested import Ingested
from tests.support.landing import landing_uris
from tests.support.paths import DEMO_SPEC


@pytest.fixture(scope="session")
def ingested(demo_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    """The clean demo files ingested and validated by the plain stage functions."""
    spec = load_spec(str(DEMO_SPEC))
    lake = Lake(str(tmp_path_factory.mktemp("unit-lake")))
    outcomes = [
        ingest_file(source_uri=u, spec=spec, lake=lake) for u in landing_uris(str(demo_source))
    ]
    version = write_version(
        spec=spec, lake=lake, source=str(demo_source), outcomes=outcomes
    ).version
    results = [validate_partition(partition=p, spec=spec) for p in version.partitions]
    report = write_report(spec=spec, lake=lake, version=version, results=results)
    assert report.passed
    return Ingested(spec=spec, lake=lake, version=version, report=report)
