"""Progress of a long command (`demo`, `import`, `dlq redrive`, `replay`).

On a terminal: a rich live display (a bar, or the command's own table). Otherwise (a pipe,
a log file, CI) a live display would show only once the command ends, so a plain line is
printed every `interval_s` (settings ops.progress_interval_s) and once at the end:

    import lessen360 attachment: 1200/5000 (24%), 3 s
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class ProgressReport:
    """What a long command has done so far: a count (`done` of `total`), a status text and,
    for a terminal, optionally a renderable of its own. Safe to update from any thread."""

    def __init__(self, label: str, console: Console, interval_s: float, *, total: int | None = None,
                 table: bool = False, live: bool | None = None):
        self.label = label
        self.console = console
        self.interval_s = max(0.05, interval_s)
        self.total = total
        self.done: int | None = None
        self.status = ""
        self.live = console.is_terminal if live is None else live
        self.table = table  # on a terminal: show the renderables given to update(), not a bar
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._renderable: RenderableType | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Progress | None = None
        self._bar_task: Any = None
        self._live: Live | None = None

    def update(self, *, done: int | None = None, advance: int = 0, total: int | None = None,
               status: str | None = None, renderable: RenderableType | None = None) -> None:
        with self._lock:
            if total is not None:
                self.total = total
            if done is not None:
                self.done = done
            if advance:
                self.done = (self.done or 0) + advance
            if status is not None:
                self.status = status
            if renderable is not None:
                self._renderable = renderable
        if self._live is not None and renderable is not None:
            self._live.update(renderable)
        if self._bar is not None:
            self._bar.update(self._bar_task, completed=self.done or 0, total=self.total, status=self.status)

    def line(self) -> str:
        """The plain progress line: label, count (and share), status, seconds so far."""
        with self._lock:
            parts = []
            if self.done is not None or self.total is not None:
                count = f"{self.done or 0}/{self.total}" if self.total is not None else f"{self.done or 0}"
                if self.total:
                    count += f" ({100 * (self.done or 0) // self.total}%)"
                parts.append(count)
            if self.status:
                parts.append(self.status)
        parts.append(f"{time.monotonic() - self.started:,.0f} s")
        return f"{self.label}: {', '.join(parts)}"

    def _print_line(self) -> None:
        self.console.file.write(self.line() + "\n")
        self.console.file.flush()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._print_line()

    def __enter__(self) -> ProgressReport:
        if not self.live:
            self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._thread.start()
        elif self.table:
            self._live = Live(self._renderable or "", console=self.console, refresh_per_second=2)
            self._live.__enter__()
        else:
            self._bar = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[status]}"), console=self.console)
            self._bar_task = self._bar.add_task(self.label, total=self.total, status=self.status)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._print_line()
        if self._live is not None:
            self._live.__exit__(None, None, None)
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


@contextmanager
def progress_report(label: str, console: Console, interval_s: float, *, total: int | None = None,
                    table: bool = False) -> Iterator[ProgressReport]:
    """A ProgressReport for the block. `table`: on a terminal, show the renderables given to
    update() (the demo's table) instead of a bar."""
    with ProgressReport(label, console, interval_s, total=total, table=table) as report:
        yield report
