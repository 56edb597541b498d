"""The run folder: a new one per compile (or the one to resume), locked while a compile writes into it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from pathlib import Path
from typing import Any

from edgekd.config.model import ModelConfig
from edgekd.core.errors import PipelineError


class RunLock:
    """An exclusive lock on a run folder, so two compiles never write into the same one. The ``.lock`` file is
    removed when the compile ends, so a finished run folder holds only the run's files."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self._f: Any = None

    def __enter__(self) -> RunLock:
        for _ in range(3):
            f = open(self.path, "a")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                break
            try:  # the lock counts only on the file still at .lock (its holder removes it before letting go)
                same = os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._f = f
                return self
            f.close()
        raise PipelineError(
            f"{self.path.parent} is in use by another edgekd process",
            fix="wait for it to finish, or compile into another --out",
        )

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still holding the lock: a waiting process then sees another file
        fcntl.flock(self._f, fcntl.LOCK_UN)
        self._f.close()


def run_folder(out: Path, cfg: ModelConfig, resume: bool | str | Path | None) -> Path:
    """A new folder ``out/<name>-<time>`` for this compile, or with ``resume`` the latest (or given) earlier one."""
    if resume not in (None, False):
        if resume is True:
            prefix = re.sub(r"[^A-Za-z0-9_.-]", "-", cfg.name) + "-"
            runs = sorted((d for d in out.glob(prefix + "*") if d.is_dir()), key=lambda d: d.stat().st_mtime)
            if not runs:
                raise PipelineError(f"--resume: no earlier run of {cfg.name!r} in {out}", fix="run without --resume")
            return runs[-1]
        run = Path(resume)  # type: ignore[arg-type]
        if not (run / "manifest.json").is_file() and not (run / "events.jsonl").is_file():
            raise PipelineError(f"--resume {run}: not an edgekd run folder", fix="give a folder under your --out")
        return run
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = out / f"{re.sub(r'[^A-Za-z0-9_.-]', '-', cfg.name)}-{stamp}"
    run, n = base, 1
    while True:
        try:
            run.mkdir(parents=True)
            return run
        except FileExistsError:  # two compiles in the same second get distinct folders
            n += 1
            run = base.with_name(f"{base.name}-{n}")
