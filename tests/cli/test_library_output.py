"""Other libraries' output stays off the terminal: LiteRT's C++ 'INFO: Created TensorFlow Lite XNNPACK delegate'
line (and torchao's load messages, torch deprecation warnings...) went straight to the user's terminal; now
they are captured (filed in events.jsonl by a compile) and ``--verbose`` shows them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import tiny_config, write_config

DELEGATE_LINE = "Created TensorFlow Lite XNNPACK delegate"


def _edgekd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekd.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_a_tflite_compile_shows_only_edgekd_lines_and_files_the_rest(tmp_path: Path) -> None:
    pytest.importorskip("litert_torch")
    lower = {"lower": {"tflite": {"precisions": ["fp32"]}, "parity": {"samples": 16}}}
    cfg = tiny_config(tmp_path, passes=[lower, {"report": {}}])
    out = _edgekd("compile", str(write_config(tmp_path, cfg)), "--target", "raspberry-pi-4", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    shown = out.stdout + out.stderr
    assert DELEGATE_LINE not in shown and "Failed to load" not in shown and "_pytree" not in shown, shown
    assert "[3/3] report" in shown and "student.fp32.tflite" in shown  # edgekd's own lines are all there
    run = next(tmp_path.glob("tiny-*"))
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    filed = [e for e in events if e["event"] == "library_output"]
    assert len(filed) == 1 and any(DELEGATE_LINE in line for line in filed[0]["lines"])


def test_capture_takes_c_level_python_and_warning_output_but_not_edgekd_console(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, sys, warnings
        from edgekd.core.library_output import library_output_captured, library_lines
        from edgekd.core.progress import console
        with library_output_captured() as path:
            os.write(2, b"from C++ on fd 2\\n")
            os.write(1, b"from C on fd 1\\n")
            print("a library's print")
            warnings.warn("a library's warning")
            console.print("edgekd's own line")
        print("after the block")
        print("CAPTURED:", library_lines(path))
        path.unlink()
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    captured = out.stdout.split("CAPTURED:", 1)[1]
    for text in ("from C++ on fd 2", "from C on fd 1", "a library's print", "a library's warning"):
        assert text in captured and text not in out.stderr and text not in out.stdout.split("CAPTURED:")[0]
    assert "edgekd's own line" in out.stderr and "edgekd's own line" not in captured
    assert "after the block" in out.stdout
