"""Progress of a long command on stderr: a live bar with an ETA on a terminal, plain log lines
elsewhere (a CI log, `2> run.log`, a batch job), so a long run never looks hung.

Engines report `(done, total, label)` to the callback `progress_bar` yields; nothing here
writes to a run directory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

Update = Callable[[int, int, str], None]
LOG_EVERY_SECONDS = 30.0
LOG_STEPS = 10  # a line at each new tenth of the work


def eta_text(done: int, total: int, elapsed: float) -> str:
    """'about 2m 05s left' from the pace so far; '' before there is a pace to go by."""
    if done <= 0 or total <= 0 or done >= total or elapsed <= 0:
        return ""
    left = round(elapsed / done * (total - done))
    minutes, seconds = divmod(left, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"about {hours}h {minutes:02d}m left"
    return f"about {minutes}m {seconds:02d}s left" if minutes else f"about {seconds}s left"


class LogLines:
    """Plain progress lines: one at each new tenth of the work and at least every 30 s while
    work advances, plus the first and the last; the callback engines report to. `beat` adds a
    line when nothing was said for 30 s (a model loading, one long backend call)."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic,
                 every_seconds: float = LOG_EVERY_SECONDS) -> None:
        self.console = console
        self.clock = clock
        self.every_seconds = every_seconds
        self.started = clock()
        self.last_time: float | None = None
        self.last_step = -1
        self.last_total = 0
        self.last_seen: tuple[int, str] | None = None
        self.lock = threading.Lock()

    def __call__(self, done: int, total: int, label: str) -> None:
        with self.lock:
            self._report(done, total, label)

    def beat(self) -> None:
        """Repeat the last state, marked as still working, when nothing was said for 30 s."""
        with self.lock:
            now = self.clock()
            if self.last_time is None or now - self.last_time < self.every_seconds:
                return
            label = self.last_seen[1] if self.last_seen else ""
            self.console.print(f"progress: {label}: still working, {now - self.started:.0f} s",
                               markup=False, highlight=False, soft_wrap=True)
            self.last_time = now

    def _report(self, done: int, total: int, label: str) -> None:
        now = self.clock()
        if total != self.last_total:  # new work (training, then simulating): count tenths anew
            self.last_step, self.last_total = -1, total
        step = done * LOG_STEPS // total if total > 0 else -1
        due = (self.last_time is None or step > self.last_step or done >= total > 0
               or now - self.last_time >= self.every_seconds)
        if not due or (done, label) == self.last_seen:
            return
        elapsed = now - self.started
        counts = f": {done}/{total} ({done / total:.0%})" if total > 0 else ""
        eta = eta_text(done, total, elapsed)
        self.console.print(f"progress: {label}{counts}, {elapsed:.0f} s"
                           + (f", {eta}" if eta else ""), markup=False, highlight=False,
                           soft_wrap=True)
        self.last_time, self.last_step, self.last_seen = now, step, (done, label)


@contextmanager
def progress_bar(first: str, console: Console | None = None) -> Iterator[Update]:
    """A rich progress bar with an ETA on stderr when it is a terminal, else plain log lines;
    yields the (done, total, label) callback engines report to."""
    console = console or Console(stderr=True, soft_wrap=True)
    if not console.is_terminal:
        lines = LogLines(console)
        lines(0, 0, first)
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(1.0):
                lines.beat()

        beater = threading.Thread(target=heartbeat, name="progress-heartbeat", daemon=True)
        beater.start()
        try:
            yield lines
        finally:
            stop.set()
            beater.join()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(first, total=None)

        def update(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        yield update
