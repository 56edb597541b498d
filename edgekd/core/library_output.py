"""Keep other libraries' output off the terminal: what TensorFlow Lite, absl, oneDNN (from C++), torchao, torch's
deprecation warnings or onnxruntime's calibrator print goes to a file, while edgekd's own console keeps the
terminal. ``edgekd compile`` files those lines in the run's ``events.jsonl``; ``--verbose`` shows them instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgekd.core.progress import console


@contextlib.contextmanager
def library_output_captured() -> Iterator[Path]:
    """While the block runs, file descriptors 1 and 2 (so ``sys.stdout``, ``sys.stderr``, warnings, logging and
    C++ libraries alike) write to a temporary file, whose path is yielded; :data:`console` writes to the terminal.
    The file is left for the caller to read (and remove)."""
    fd, name = tempfile.mkstemp(prefix="edgekd-libraries-", suffix=".log")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
    previous = console._file  # None: rich follows sys.stderr
    console.file = terminal
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield Path(name)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
        console._file = previous
        terminal.close()


def library_lines(path: Path) -> list[str]:
    """The non-empty lines captured in ``path``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()]
