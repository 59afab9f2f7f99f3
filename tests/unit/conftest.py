from __future__ import annotations

from pathlib import Path

import pytest

from tasks.ingest.versions import write_version
from tasks.lake import Lake
from tasks.spec import load_spec
from tasks.validate.partition import validate_partition
from tasks.validate.report import write_report
from tests.support.ingested import Ingested
from tests.support.ingesting import ingest_source, with_ingest
from tests.support.paths import DEMO_SPEC


@pytest.fixture(scope="session")
def ingested(demo_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    """The clean demo files ingested and validated by the plain stage functions, one
    partition per file (1,500 rows each), so the distributed code sees several."""
    spec = with_ingest(load_spec(str(DEMO_SPEC)), partition_rows=1500)
    lake = Lake(str(tmp_path_factory.mktemp("unit-lake")))
    outcomes = ingest_source(demo_source, spec, lake)
    version = write_version(spec=spec, lake=lake, source=str(demo_source), outcomes=outcomes)
    results = [validate_partition(partition=p, spec=spec) for p in version.version.partitions]
    report = write_report(spec=spec, lake=lake, version=version.version, results=results)
    assert report.passed and len(version.version.partitions) == 4
    return Ingested(spec=spec, lake=lake, version=version.version, report=report)
