"""Progress artifacts and Dask performance reports against the session's Prefect API and
Dask cluster (the whole pipeline's are read back in tests/integration/test_observability.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prefect import flow, get_run_logger
from prefect.artifacts import Artifact
from prefect.context import FlowRunContext

from tasks.runtime.dask_report import stage_diagnostics
from tasks.runtime.progress import ProgressUpdate, StageProgress, progress_listener

pytestmark = pytest.mark.timeout(120)


def test_progress_tells_listeners_every_update_and_the_api_at_most_once_a_second() -> None:
    seen: list[ProgressUpdate] = []
    with progress_listener(seen.append):
        progress = StageProgress(
            stage="ingest", dataset="progress-test", total=4, unit="files", interval=60
        )
        progress.update(1)
        # Within the interval: listeners hear it, the API is not called again.
        assert Artifact.get("ingest-progress-progress-test").data == 0.0  # type: ignore[union-attr]
        progress.update(3, "three")
        progress.update(4, "all")
    # The final update always goes out.
    artifact = Artifact.get("ingest-progress-progress-test")
    assert artifact is not None and artifact.type == "progress" and artifact.data == 100.0
    assert artifact.description == "ingest: 4 of 4 files (all)"
    assert [(u.done, u.detail) for u in seen] == [(1, ""), (3, "three"), (4, "all")]
    progress.update(4)
    assert len(seen) == 3, "a listener is told only while registered"


def _square(x: int) -> int:
    return x * x


def test_each_stage_writes_a_performance_report_even_when_it_fails(
    dask_client: Any, tmp_path: Path
) -> None:
    lake = str(tmp_path / "lake")

    @flow
    def stage(mode: str, fail: bool) -> str:
        run = str(FlowRunContext.get().flow_run.id)  # type: ignore[union-attr]
        with stage_diagnostics(
            dask_client,
            stage="ingest",
            mode=mode,
            lake=lake,
            flow_run_id=run,
            logger=get_run_logger(),
        ):
            assert sum(dask_client.gather(dask_client.map(_square, range(10)))) == 285
            if fail:
                raise RuntimeError("the stage failed")
        return run

    run = stage("cdn", False)
    report = tmp_path / "lake" / "runs" / "reports" / "dask" / run / "ingest.html"
    assert "<title>Dask Performance Report</title>" in report.read_text()
    link = Artifact.get("dask-report-ingest")
    assert link is not None and str(link.flow_run_id) == run and report.as_uri() in str(link.data)

    failed = stage(mode="cdn", fail=True, return_state=True)
    assert failed.is_failed()
    reports = list((tmp_path / "lake" / "runs" / "reports" / "dask").glob("*/ingest.html"))
    assert len(reports) == 2

    assert stage("off", False)
    assert len(list((tmp_path / "lake" / "runs" / "reports" / "dask").glob("*/*.html"))) == 2
