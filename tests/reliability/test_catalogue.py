"""Run every case of the bad-input catalogue through the CLI."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.cli import main
from tests.helpers import REPO
from tests.reliability.cases import CASES, Case, markdown_table

README = Path(__file__).with_name("README.md")


def _run_in_subprocess(args: list[str], cwd: Path, fsize_limit: int | None, path_first: Path | None) -> tuple[int, str]:
    def limit() -> None:
        if fsize_limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    proc = subprocess.run(
        [sys.executable, "-m", "edgekd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (path_first, REPO) if p is not None)},
        preexec_fn=limit,
        timeout=600,
    )
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # where cases write their own model builders
    args = case.setup(tmp_path)
    if case.fsize_limit or case.isolated:
        code, err = _run_in_subprocess(args, tmp_path, case.fsize_limit, tmp_path if case.isolated else None)
    else:
        code = main(args)  # an exception escaping here would be a traceback for the user
        err = capsys.readouterr().err
    assert code == case.exit_code, err
    assert "Traceback" not in err
    assert err.startswith(f"error [{case.error}]: "), err
    flat = " ".join(err.split())
    for fragment in case.expect:
        assert " ".join(fragment.split()) in flat, f"{fragment!r} not in:\n{err}"
    assert "fix:" in err, "every user error says how to fix it"
    runs = tmp_path / "runs"
    if not case.creates_run:
        assert not runs.exists() or not any(p for p in runs.iterdir() if p.name != ".cache"), "no run folder"
    assert not list(tmp_path.rglob("result.json")) and not list(tmp_path.rglob("report.md")), "nothing looks complete"
    assert not list(tmp_path.rglob("*.tmp")), "no temp file left behind"
    assert not list(tmp_path.rglob("pwned*")), "no code from config or checkpoint ran"


def test_catalogue_has_at_least_30_distinct_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


def test_readme_table_is_current() -> None:
    assert README.read_text() == markdown_table(), "regenerate: python -m tests.reliability.cases > " + str(README)


def test_error_types_are_real_edgekd_errors() -> None:
    import edgekd.errors as errors

    for c in CASES:
        cls = getattr(errors, c.error, None)
        assert isinstance(cls, type) and issubclass(cls, errors.EdgekdError), c.error
    assert all(re.fullmatch(r"[a-z0-9-]+", c.id) for c in CASES)
