"""Progress display and the run's event log.

``events.jsonl`` gets one JSON line per event. Progress bars are rich bars on a
terminal and one plain line per finished task elsewhere (CI logs, pipes).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)

#: the note function (``Context.note``) of the compile running in this thread, for code given no Context
_RUN_NOTE: ContextVar[Callable[[str], None] | None] = ContextVar("edgekd_run_note", default=None)


@contextlib.contextmanager
def notes_to(note: Callable[[str], None]) -> Iterator[None]:
    """Within the block, :func:`run_note` says its text through ``note`` (a compile's ``Context.note``)."""
    token = _RUN_NOTE.set(note)
    try:
        yield
    finally:
        _RUN_NOTE.reset(token)


def run_note(text: str) -> bool:
    """Put ``text`` in the report notes of the compile running in this thread, for code that has no Context (a
    backend's quantizer or converter); False outside a compile (the caller's log line is then all there is)."""
    note = _RUN_NOTE.get()
    if note is None:
        return False
    note(text)
    return True


class EventLog:
    """Append-only JSON-lines log; every line has ``t`` (unix time) and ``event``."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        if self.path is None:
            return
        line = json.dumps({"t": round(time.time(), 3), "event": event, **fields}, default=str)
        try:
            with self._lock, open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as exc:
            from edgekd.core.errors import storage_error

            raise storage_error(exc, self.path) from exc


def _fmt(fields: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4g}" for k, v in fields.items())


class TaskProgress:
    """A :class:`edgekd.train.loop.ProgressSink` that draws a bar and logs finished tasks as events."""

    def __init__(self, label: str, events: EventLog, quiet: bool = False) -> None:
        self.label = label
        self.events = events
        self.quiet = quiet
        self._bar: Progress | None = None
        self._task: Any = None
        self._name = ""
        self._t0 = 0.0

    def start(self, name: str, total: int) -> None:
        self._name, self._t0 = name, time.perf_counter()
        if self.quiet or not console.is_terminal:
            return
        self._bar = Progress(
            TextColumn(f"[bold]{self.label}[/] {{task.description}}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(name, total=total, info="")

    def advance(self, n: int = 1, **fields: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=n, info=_fmt(fields))

    def finish(self, **fields: float) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        seconds = time.perf_counter() - self._t0
        if not self.quiet:
            console.print(f"  {self.label} {self._name}: {_fmt(fields)}  ({seconds:.1f}s)")
        self.events.emit("progress", task=f"{self.label} {self._name}", seconds=round(seconds, 3), **fields)
