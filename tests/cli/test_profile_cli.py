"""``edgekd profile`` of any model file: --threads reaches the runtime, and the printed section says where its
figures are (no 'Figure in report.html' when no page was written); a Python caller gets the same section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import edgekd
from edgekd.backends.onnx.lower import export_onnx
from edgekd.cli import main
from edgekd.models import zoo
from tests.helpers import TINY_STUDENT


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    m = zoo.build("resnet", TINY_STUDENT).eval()
    return export_onnx(m, torch.zeros(1, 1, 28, 28), tmp_path_factory.mktemp("m") / "student.onnx")


def test_threads_flag_reaches_the_runtime(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for threads in (1, 2):
        assert main(["profile", str(model), "--runs", "5", "--warmup", "1", "--threads", str(threads), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["threads"] == threads


def test_markdown_names_the_page_its_figures_are_in(model: Path, tmp_path: Path, capsys) -> None:
    assert main(["profile", str(model), "--runs", "5", "--warmup", "1", "--per-layer", "2"]) == 0
    plain = capsys.readouterr().out
    assert "report.html" not in plain and "Figure left out (only an HTML page shows it: --html FILE)" in plain
    page = tmp_path / "latency.html"
    assert main(["profile", str(model), "--runs", "5", "--warmup", "1", "--html", str(page)]) == 0
    assert "*Figure in latency.html:" in capsys.readouterr().out and "<svg" in page.read_text()


def test_python_callers_get_the_cli_section(model: Path, tmp_path: Path) -> None:
    (s,) = edgekd.profile(model, runs=5, warmup=1, threads=1)
    markdown, page = edgekd.latency_report([(f"`{model}`", s.to_dict())], "x86-cpu", html=tmp_path / "p.html")
    assert "| model | p50 ms |" in markdown and page is not None and page.read_text().startswith("<!DOCTYPE html>")


def test_tflite_per_layer_says_litert_has_no_profiler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.tflite_files import fc_file

    model = fc_file(tmp_path / "fc.tflite")
    assert main(["profile", str(model), "--runs", "3", "--warmup", "1", "--per-layer", "5"]) == 0
    out = capsys.readouterr().out
    assert "`" + str(model) + "`: per-layer profiling is not supported for LiteRT (.tflite) files" in out
    assert "offers no op profiler" in out and "No per-layer profile" not in out
    assert main(["profile", str(model), "--runs", "3", "--warmup", "1", "--per-layer", "5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["per_layer"] is None and "not supported for LiteRT" in d["per_layer_unsupported"]
    assert main(["profile", str(model), "--runs", "3", "--warmup", "1", "--json"]) == 0  # not asked: nothing said
    assert json.loads(capsys.readouterr().out)["per_layer_unsupported"] is None
