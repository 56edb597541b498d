"""report.html in a real headless browser (Debian ``chromium``): it renders, with its plots, and logs no errors.

Skipped, with the reason, where no chromium is installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgekd.api import CompileResult

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--log-level=0",
]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


def _chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_console_errors_are_detected(tmp_path: Path) -> None:
    """The check below would see a broken page: a script error reaches the log we read."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><p>x</p><script>missingFunction()</script></body></html>")
    proc = _chromium(page, tmp_path / "profile", "--dump-dom")
    assert any("missingFunction is not defined" in line for line in _console(proc.stderr))


def test_report_html_renders_its_plots_without_errors(board_run: CompileResult, tmp_path: Path) -> None:
    from PIL import Image

    page = board_run.run_dir / "report.html"
    shot = tmp_path / "report.png"
    proc = _chromium(page, tmp_path / "profile", "--window-size=1200,3000", f"--screenshot={shot}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _console(proc.stderr) == []
    assert shot.stat().st_size > 50_000
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 3000)
    colours = img.getcolors(maxcolors=1 << 20) or []
    # the plots' palette is on screen: the blue of the first series and the red of the chosen student
    drawn = {c for _, c in colours}
    assert any(abs(r - 0x4E) < 12 and abs(g - 0x79) < 12 and abs(b - 0xA7) < 12 for r, g, b in drawn)
    assert any(abs(r - 0xD6) < 12 and abs(g - 0x27) < 12 and abs(b - 0x28) < 12 for r, g, b in drawn)
    non_white = sum(n for n, c in colours if c != (255, 255, 255))
    assert non_white > 0.05 * 1200 * 3000
    dom = _chromium(page, tmp_path / "profile2", "--dump-dom")
    assert dom.stdout.count("<svg") >= 7 and _console(dom.stderr) == []
