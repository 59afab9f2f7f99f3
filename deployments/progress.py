"""``mlops run``'s progress display: rich progress bars on a terminal, milestones in a log."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from tasks.runtime.progress import ProgressUpdate

# Without a terminal (CI logs, pipes) only these fractions of a stage are printed.
MILESTONES = (0.0, 0.25, 0.5, 0.75, 1.0)


def milestone_line(update: ProgressUpdate) -> str:
    """One log line for a stage's progress."""
    line = (
        f"progress  {update.stage:<8} {update.done}/{update.total} {update.unit} "
        f"({update.percent:.0f}%)"
    )
    return f"{line}  {update.detail}" if update.detail else line


class ProgressDisplay:
    """A progress listener (``tasks.runtime.progress.progress_listener``) writing to ``stream``.

    On a terminal, one rich progress bar per stage, redrawn in place while the display is
    entered (``with display:``); elsewhere a line is printed when a stage starts, passes
    each quarter and ends, so logs stay short.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.console = Console(file=stream or sys.stderr, highlight=False)
        self.tty = self.console.is_terminal and not self.console.is_dumb_terminal
        self.bars = Progress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
        )
        self._lock = threading.Lock()
        self._stages: dict[str, TaskID] = {}
        self._reached: dict[str, float] = {}

    def __enter__(self) -> ProgressDisplay:
        if self.tty:
            self.bars.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.tty:
            self.bars.stop()

    def __call__(self, update: ProgressUpdate) -> None:
        with self._lock:
            if self.tty:
                self._draw(update)
            else:
                self._log(update)

    def _draw(self, update: ProgressUpdate) -> None:
        stage = self._stages.get(update.stage)
        if stage is None:
            stage = self.bars.add_task(
                update.stage, total=update.total, unit=update.unit, detail=update.detail
            )
            self._stages[update.stage] = stage
        # A stage with nothing to do is complete at once.
        total = update.total or 1
        done = update.done if update.total else 1
        self.bars.update(stage, completed=done, total=total, detail=update.detail)

    def _log(self, update: ProgressUpdate) -> None:
        fraction = update.done / update.total if update.total else 1.0
        passed = max(m for m in MILESTONES if m <= fraction)
        if self._reached.get(update.stage, -1.0) >= passed:
            return
        self._reached[update.stage] = passed
        self.console.print(milestone_line(update), markup=False, soft_wrap=True)
