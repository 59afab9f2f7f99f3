"""``mlops run``'s progress display: one bar per stage on a terminal, milestones in a log."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from tasks.observability import ProgressUpdate

BAR_WIDTH = 24
# Without a terminal (CI logs, pipes) only these fractions of a stage are printed.
MILESTONES = (0.0, 0.25, 0.5, 0.75, 1.0)


def render(update: ProgressUpdate) -> str:
    filled = round(BAR_WIDTH * update.done / update.total) if update.total else BAR_WIDTH
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    line = (
        f"progress  {update.stage:<8} [{bar}] {update.done}/{update.total} {update.unit} "
        f"({update.percent:.0f}%)"
    )
    return f"{line}  {update.detail}" if update.detail else line


class ProgressDisplay:
    """A progress listener (``tasks.observability.progress_listener``) writing to ``stream``.

    On a terminal the stage's line is redrawn in place; elsewhere a line is printed when a
    stage starts, passes each quarter and ends, so logs stay short.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._lock = threading.Lock()
        self._reached: dict[str, float] = {}

    def __call__(self, update: ProgressUpdate) -> None:
        with self._lock:
            if self.tty:
                end = "\n" if update.done >= update.total else ""
                self.stream.write(f"\r\x1b[K{render(update)}{end}")
            else:
                fraction = update.done / update.total if update.total else 1.0
                passed = max(m for m in MILESTONES if m <= fraction)
                if self._reached.get(update.stage, -1.0) >= passed:
                    return
                self._reached[update.stage] = passed
                self.stream.write(render(update) + "\n")
            self.stream.flush()
