"""constraints.max_size_mb and max_latency_ms are enforced like the accuracy guard: a compile that misses one
ends with exit code 3, result.failed.json and report.failed.md, and no result.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgekd
from edgekd.cli import main
from edgekd.core.errors import ConstraintError
from tests.helpers import tiny_config, write_config

LOWER = {"lower": {"parity": {"samples": 32, "min_top1": 80.0, "min_cosine": 0.9}}}


def _config(tmp_path: Path, constraints: dict, profile: bool) -> Path:
    passes = [{"distill": {"epochs": 1, "batch_size": 64}}, LOWER]
    if profile:
        passes.append({"profile": {"warmup": 1, "runs": 5, "rounds": 1, "include_teacher": False}})
    return write_config(tmp_path, tiny_config(tmp_path, passes=passes, constraints=constraints))


def _failed_run(tmp_path: Path) -> Path:
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.name != ".cache"]
    assert (run / "result.failed.json").is_file() and (run / "report.failed.md").is_file()
    assert not (run / "result.json").exists()
    return run


def test_a_size_limit_the_student_misses_fails_the_compile(tmp_path: Path) -> None:
    path = _config(tmp_path, {"max_size_mb": 1e-6}, profile=False)
    with pytest.raises(ConstraintError, match=r"constraints not met: max_size_mb .* > limit 1e-06"):
        edgekd.compile(path, out=tmp_path / "runs", quiet=True)
    failed = json.loads((_failed_run(tmp_path) / "result.failed.json").read_text())
    assert failed["failed"]["error"] == "ConstraintError" and failed["constraints"]["max_size_mb"]["met"] is False


def test_a_latency_limit_measured_on_the_target_fails_the_compile_with_exit_3(tmp_path: Path, capsys) -> None:
    path = _config(tmp_path, {"max_latency_ms": 1e-6}, profile=True)
    assert main(["compile", str(path), "--target", "x86-cpu", "--out", str(tmp_path / "runs"), "-q"]) == 3
    assert "constraints not met: max_latency_ms" in capsys.readouterr().err
    _failed_run(tmp_path)


def test_a_latency_limit_is_not_checked_on_a_stand_in_host(tmp_path: Path) -> None:
    path = _config(tmp_path, {"max_latency_ms": 1e-6}, profile=True)
    res = edgekd.compile(path, target="jetson-orin-nano", out=tmp_path / "runs", quiet=True)
    c = res.result["constraints"]["max_latency_ms"]
    assert c["met"] is None and c["on_target"] is False
    assert "not checked (latency not measured on the target)" in res.report_path.read_text()
