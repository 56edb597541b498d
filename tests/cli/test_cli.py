"""The CLI is a thin shell: user errors print one clear message, no traceback, non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, tiny_config, write_config


def edgekd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "edgekd", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def test_targets_lists_the_three_profiles() -> None:
    r = edgekd("targets", "--json")
    assert r.returncode == 0, r.stderr
    names = {t["name"] for t in json.loads(r.stdout)}
    assert {"x86-cpu", "jetson-orin-nano", "raspberry-pi-4"} <= names


def test_bad_config_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, passes=[{"quantize": {"precision": "int4"}}])
    r = edgekd("compile", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "runs"))
    assert r.returncode == 2
    assert "passes[0].quantize.precision: 'int4' is not one of int8, fp16, fp32" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_target_suggests_names(tiny: Path, tmp_path: Path) -> None:
    r = edgekd("compile", str(tiny), "--target", "jetsn", "--out", str(tmp_path / "runs"))
    assert r.returncode == 2
    assert "unknown target 'jetsn' (did you mean 'jetson'?)" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    r = edgekd("compile", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "nope.yaml: file not found" in r.stderr and "edgekd init" in r.stderr


def test_init_writes_a_config_that_validates(tmp_path: Path) -> None:
    r = edgekd("init", "model.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "model.yaml").read_text()
    assert "# edgekd model config" in text
    again = edgekd("init", "model.yaml", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    import yaml

    from edgekd.compiler.plan import parse_model_config

    raw = yaml.safe_load(text)
    raw["teacher"].pop("checkpoint")
    cfg = parse_model_config(raw)
    assert [p.name for p in cfg.passes] == ["distill", "quantize", "lower", "profile", "report"]


def test_compile_profile_and_report_round_trip(tiny: Path, tmp_path: Path) -> None:
    r = edgekd("compile", str(tiny), "--out", str(tmp_path / "runs"), "--json", "-q")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    run = tmp_path / "runs" / result["run_id"]
    prof = edgekd("profile", str(run / "student.onnx"), "--runs", "20", "--warmup", "2", "--json")
    assert prof.returncode == 0, prof.stderr
    stats = json.loads(prof.stdout)
    assert 0 < stats["p50_ms"] <= stats["p99_ms"]
    (run / "report.md").unlink()
    rep = edgekd("report", str(run))
    assert rep.returncode == 0 and (run / "report.md").is_file()


def test_profile_of_missing_file(tmp_path: Path) -> None:
    r = edgekd("profile", str(tmp_path / "x.onnx"))
    assert r.returncode == 2 and "file not found" in r.stderr


def test_search_prints_the_pareto_set(tmp_path: Path) -> None:
    search = {
        "space": {"blocks": [[1], [1, 2], [1]], "widths": [[4, 8], [8], [16]], "kernel": [3]},
        "population": 2,
        "iterations": 2,
        "batches": 1,
        "batch_size": 16,
    }
    cfg = tiny_config(tmp_path, passes=[{"search": search}, {"distill": {"epochs": 1}}])
    del cfg["student"]
    r = edgekd("search", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "runs"), "-q")
    assert r.returncode == 0, r.stderr
    assert "params search" in r.stdout and "<- chosen" in r.stdout and "search.json" in r.stdout
    assert "distill" not in r.stdout  # only the search ran
