"""Progress of long command-line work: a rich progress bar on a terminal, plain lines otherwise.

    with progress("seeding members", total=n) as bar:
        for ...:
            bar.advance(1)            # or bar.advance(k, "what is happening now")

    bar = ProgressBar("seed-demo", total=n)   # the same without a with-block
    bar.advance(); ...; bar.close()

On a terminal (stderr is a TTY) a bar with rate and time left; when not (logs, CI, cron) one line
``<label>: <done>/<total> (<pct>%) <note>`` at most every ``every_seconds`` and at the end, so logs stay
short. ``total=None`` counts without a percentage. Output goes to stderr, so a command's stdout (JSON
results) stays machine-readable.
"""

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO


class _Plain:
    def __init__(self, label: str, total: int | None, stream: IO[str], every_seconds: float) -> None:
        self.label, self.total, self.stream, self.every = label, total, stream, every_seconds
        self.done = 0
        self._last = 0.0
        self.note = ""

    def _line(self) -> str:
        if self.total:
            return f"{self.label}: {self.done}/{self.total} ({100 * self.done // self.total}%) {self.note}".rstrip()
        return f"{self.label}: {self.done} {self.note}".rstrip()

    def advance(self, amount: int = 1, note: str = "") -> None:
        self.done += amount
        self.note = note or self.note
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            print(self._line(), file=self.stream, flush=True)

    def finish(self) -> None:
        print(self._line() + " done", file=self.stream, flush=True)


class _Rich:
    def __init__(self, bar, task) -> None:
        self.bar, self.task = bar, task

    def advance(self, amount: int = 1, note: str = "") -> None:
        if note:
            self.bar.update(self.task, advance=amount, description=note)
        else:
            self.bar.update(self.task, advance=amount)


class ProgressBar:
    """A progress display started at once; ``advance`` it, then ``close`` it."""

    def __init__(self, label: str, *, total: int | None = None, stream: IO[str] | None = None,
                 every_seconds: float = 5.0, force_plain: bool = False) -> None:
        out = stream or sys.stderr
        self._rich = None
        if not force_plain and getattr(out, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._rich = Progress(TextColumn(f"{label} [dim]{{task.description}}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), console=Console(file=out), transient=False)
            self._rich.start()
            self._impl: _Plain | _Rich = _Rich(self._rich, self._rich.add_task("", total=total))
        else:
            self._impl = _Plain(label, total, out, every_seconds)

    def advance(self, amount: int = 1, note: str = "") -> None:
        self._impl.advance(amount, note)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif isinstance(self._impl, _Plain):
            self._impl.finish()


@contextmanager
def progress(label: str, *, total: int | None = None, stream: IO[str] | None = None,
             every_seconds: float = 5.0, force_plain: bool = False) -> Iterator[ProgressBar]:
    bar = ProgressBar(label, total=total, stream=stream, every_seconds=every_seconds, force_plain=force_plain)
    try:
        yield bar
    finally:
        bar.close()
