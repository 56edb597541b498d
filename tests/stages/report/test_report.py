"""report.md, report.html and result.json v2 from a real run; re-rendering; v1 documents; the profile CLI section."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from edgekd.api import CompileResult
from edgekd.stages.report.render import render_html, render_markdown


def _result(run: CompileResult) -> dict:
    return json.loads(run.result_path.read_text())  # type: ignore[union-attr]


def test_result_json_v2_says_where_every_latency_comes_from(board_run: CompileResult) -> None:
    r = _result(board_run)
    assert r["schema_version"] == 3 and r["target"]["latency"] == "predictor"
    arts = r["artifacts"]
    for name in ("onnx", "onnx_int8", "teacher_onnx"):
        lat = arts[name]["latency"]
        assert lat["source"] == "measured-host" and lat["on_target"] is False and lat["measured"] is True
    # fp32 graphs are predicted for the board from its fp32 kernel table; it has no INT8 predictor
    pred = arts["onnx"]["latency"]["predicted"]
    assert pred["source"] == "predicted" and pred["measured"] is False and pred["p50_ms"] > 0.01
    assert "test-board.predictor.json" in pred["where"] and pred["per_layer"]
    assert "predicted" not in arts["onnx_int8"]["latency"]
    assert any(
        "student.int8.onnx: latency on test-board not predicted: it has no onnx-int8 latency predictor" in n
        and "--precision int8" in n
        for n in r["notes"]
    )
    assert r["environment"]["latency_sources"] == ["measured-host"]
    assert r["environment"]["threads"] == 1 and "int8" in r["environment"]["precisions"]


def test_search_uses_the_predictor_and_the_report_keeps_its_candidates(board_run: CompileResult) -> None:
    r = _result(board_run)
    s = r["search"]
    assert s["latency_source"] == "predicted" and "predicted by test-board.predictor.json" in s["latency"]
    assert s["history"] and all(0 < h["latency_ms"] <= 1.0 for h in s["history"])
    assert s["chosen"] in s["history"]
    assert any("candidate latencies are predicted, not measured" in n for n in r["notes"])


def test_pass_table_and_per_layer_precision(board_run: CompileResult) -> None:
    r = _result(board_run)
    stages = {row["stage"]: row for row in r["pass_table"]}
    assert {"input", "search", "distill", "quantize", "lower"} <= set(stages)
    assert stages["input"]["latency_source"] == "measured-host" and stages["input"]["macs"] > 0
    assert stages["quantize"]["artifact"] == "onnx_int8" and stages["quantize"]["p50_ms"] > 0
    prec = r["precision"]
    assert {row["precision"] for row in prec["onnx"]} == {"fp32"}
    int8 = [row for row in prec["onnx_int8"] if row["precision"] == "int8"]
    assert int8 and all(row["kernel"].startswith("qconv") or row["kernel"].startswith("q") for row in int8)


def test_html_is_self_contained_with_wellformed_svg_plots(board_run: CompileResult) -> None:
    html = (board_run.run_dir / "report.html").read_text()
    manifest = json.loads(board_run.manifest_path.read_text())
    assert "report_html" in manifest["artifacts"] and manifest["artifacts"]["report_html"]["sha256"]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)  # nothing fetched from elsewhere
    assert "<script" not in html and "<link" not in html
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    # Pareto plot, latency distribution, per-layer bars (3 measured + 2 predicted)
    assert len(svgs) >= 7
    for s in svgs:
        ET.fromstring(s)  # each plot is well-formed XML
    for title in ("Search: proxy score vs cost", "Latency distribution per artifact", "Slowest layers (predicted)"):
        assert title in html
    for section in ("Pass by pass", "Per-layer precision", "Artifacts and parity", "Environment", "Student search"):
        assert f">{section}</h2>" in html
    assert "measured on this host" in html and "predicted" in html


def test_edgekd_report_rerenders_both_files_identically(board_run: CompileResult) -> None:
    run = board_run.run_dir
    before = {n: (run / n).read_text() for n in ("report.md", "report.html")}
    for n in before:
        (run / n).unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd", "report", str(run)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert {n: (run / n).read_text() for n in before} == before


def test_a_v1_result_still_renders(board_run: CompileResult) -> None:
    v1 = copy.deepcopy(_result(board_run))
    v1["schema_version"] = 1
    for key in ("pass_table", "search", "precision"):
        v1.pop(key)
    for a in v1["artifacts"].values():
        if "latency" in a:
            a["latency"].pop("source")
            a["latency"].pop("predicted", None)
    md = render_markdown(v1)
    assert "result.json schema v1" in md and "measured on this host" in md and "## Pass by pass" in md
    assert "<svg" in render_html(v1)


def test_profile_cli_prints_the_report_latency_section(board_run: CompileResult, tmp_path: Path) -> None:
    model = board_run.artifacts["onnx"]
    target = board_run.run_dir.parent.parent / "test-board.yaml"
    out = tmp_path / "latency.html"
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd", "profile", str(model), "--target", str(target), "--runs", "10",
         "--warmup", "1", "--per-layer", "3", "--html", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report_md = (board_run.run_dir / "report.md").read_text()
    header = next(line for line in report_md.splitlines() if line.startswith("| model | p50 ms | p90"))
    assert header in proc.stdout  # the same table as the report's latency section
    assert "## Per-layer latency (top-k)" in proc.stdout and "predicted" in proc.stdout
    assert "measured on this host" in proc.stdout
    assert out.read_text().count("<svg") >= 2
    pred = subprocess.run(
        [sys.executable, "-m", "edgekd", "profile", str(model), "--target", str(target), "--predict", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert pred.returncode == 0, pred.stderr
    assert json.loads(pred.stdout)["source"] == "predicted"
