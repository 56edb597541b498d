"""Run a started subprocess to its end: stdout read whole, stderr streamed line by line, killed on a timeout."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable


def communicate(
    proc: subprocess.Popen[str], timeout: float | None, on_stderr_line: Callable[[str], None]
) -> tuple[str, bool]:
    """(stdout, timed_out) of ``proc`` (text mode, stdout and stderr piped). Every stderr line goes to
    ``on_stderr_line`` as it arrives (progress messages); after ``timeout`` seconds the process is killed and
    ``timed_out`` is true. The process is never left running."""

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            on_stderr_line(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer is not None:
        timer.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait()
        reader.join()
    finally:
        if timer is not None:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out, timed_out.is_set()
