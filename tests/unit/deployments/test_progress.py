"""``mlops run``'s progress display on a terminal and in a log."""

from __future__ import annotations

import io
import re

import pytest

from deployments.progress import ProgressDisplay
from tasks.runtime.progress import ProgressUpdate

pytestmark = pytest.mark.timeout(30)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_display_prints_quarter_milestones_without_a_terminal() -> None:
    out = io.StringIO()
    display = ProgressDisplay(out)
    for done in range(0, 101):
        display(ProgressUpdate("train", done, 100, "rounds"))
    display(ProgressUpdate("ingest", 0, 0, "files"))
    lines = out.getvalue().splitlines()
    assert [re.search(r"(\d+)/100", line).group(1) for line in lines[:-1]] == [  # type: ignore[union-attr]
        "0",
        "25",
        "50",
        "75",
        "100",
    ]
    assert lines[-1].startswith("progress  ingest") and "(100%)" in lines[-1]


def test_progress_display_draws_rich_bars_per_stage_on_a_terminal() -> None:
    out = Terminal()
    with ProgressDisplay(out) as display:
        assert display.tty
        display(ProgressUpdate("validate", 1, 4, "partitions"))
        display(ProgressUpdate("train", 3, 10, "rounds", "validation logloss 0.4"))
        display(ProgressUpdate("validate", 4, 4, "partitions", "done"))
        display(ProgressUpdate("ingest", 0, 0, "files"))
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    final = text.splitlines()[-3:]
    # One bar per stage, in the order the stages started, each with its counts and detail.
    assert [line.split()[0] for line in final] == ["validate", "train", "ingest"]
    assert re.search(r"4/4\s+partitions\s+100%.*done", final[0])
    assert re.search(r"3/10\s+rounds\s+30%.*validation logloss 0\.4", final[1])
    # A stage with nothing to do is complete at once.
    assert "100%" in final[2]
