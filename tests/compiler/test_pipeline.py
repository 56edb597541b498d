"""The pass manager: order checks, cache hits on re-run, resume after a killed run, manifest hashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import edgekd
from edgekd.core.artifacts import sha256_file
from edgekd.core.errors import PipelineError
from tests.helpers import REPO, tiny_config, write_config


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_order_check_refuses_quantize_after_lower(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, passes=[{"lower": {}}, {"quantize": {}}])
    with pytest.raises(PipelineError, match=r"passes\[1\].quantize cannot run after the student was lowered"):
        edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    assert not (tmp_path / "runs").exists(), "nothing may be written when the pass list is refused"


def test_order_check_needs_a_student(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    del cfg["student"]
    with pytest.raises(
        PipelineError,
        match=r"(?s)passes\[0\].distill needs student.*fix: put search before it, or give student: in model.yaml",
    ):
        edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)


def test_profile_needs_lower(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, passes=[{"distill": {"epochs": 1}}, {"profile": {}}])
    with pytest.raises(PipelineError, match=r"(?s)passes\[1\].profile needs lowered.*put lower before it"):
        edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)


def test_manifest_records_every_artifact_with_sha256(tiny: Path, tmp_path: Path) -> None:
    res = edgekd.compile(tiny, out=tmp_path / "runs", quiet=True)
    m = _manifest(res.run_dir)
    assert [p["pass"] for p in m["passes"]] == ["baseline", "distill", "quantize", "lower", "profile", "report"]
    assert set(m["artifacts"]) >= {"onnx", "onnx_int8", "teacher_onnx", "result_json", "report_md"}
    for art in m["artifacts"].values():
        assert sha256_file(res.run_dir / art["path"]) == art["sha256"]
    events = [json.loads(line)["event"] for line in (res.run_dir / "events.jsonl").read_text().splitlines()]
    assert events[0] == "compile_start" and events[-1] == "compile_end"
    assert events.count("pass_end") == 6 and "epoch" in events
    assert not list(res.run_dir.glob("*.tmp*")), "no temp files left behind"


def test_rerun_hits_the_cache_and_reproduces_artifacts(tiny: Path, tmp_path: Path) -> None:
    first = edgekd.compile(tiny, out=tmp_path / "runs", quiet=True)
    second = edgekd.compile(tiny, out=tmp_path / "runs", quiet=True)
    assert second.run_dir != first.run_dir
    status = {p["pass"]: p["status"] for p in _manifest(second.run_dir)["passes"]}
    assert status == {
        "baseline": "cached",
        "distill": "cached",
        "quantize": "cached",
        "lower": "cached",
        "profile": "cached",
        "report": "ran",
    }
    for name in ("onnx", "onnx_int8"):
        assert sha256_file(first.artifacts[name]) == sha256_file(second.artifacts[name])


def test_changed_pass_config_invalidates_it_and_later_passes(tiny: Path, tmp_path: Path) -> None:
    edgekd.compile(tiny, out=tmp_path / "runs", quiet=True)
    cfg = tiny_config(tmp_path)
    cfg["passes"][1] = {"quantize": {"precision": "int8", "per_channel": False}}
    res = edgekd.compile(write_config(tmp_path, cfg, "changed.yaml"), out=tmp_path / "runs", quiet=True)
    status = {p["pass"]: p["status"] for p in _manifest(res.run_dir)["passes"]}
    assert status["distill"] == "cached"
    assert status["quantize"] == status["lower"] == status["profile"] == "ran"


def test_corrupted_cache_entry_is_not_reused(tiny: Path, tmp_path: Path) -> None:
    first = edgekd.compile(tiny, out=tmp_path / "runs", quiet=True)
    key = next(p["key"] for p in _manifest(first.run_dir)["passes"] if p["pass"] == "lower")
    entry = tmp_path / "runs" / ".cache" / key
    victim = next(f for f in entry.iterdir() if f.name.endswith("student.onnx"))
    victim.write_bytes(victim.read_bytes()[:-10] + b"corrupted!")
    res = edgekd.compile(tiny, out=tmp_path / "runs", quiet=True)
    status = {p["pass"]: p["status"] for p in _manifest(res.run_dir)["passes"]}
    assert status["lower"] == "ran" and status["quantize"] == "cached"
    assert sha256_file(res.artifacts["onnx"]) == sha256_file(first.artifacts["onnx"])
    assert any("corrupted" in n for n in res.notes)


def test_resume_after_sigkill_finishes_with_identical_artifacts(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    cfg["passes"][0] = {"distill": {"epochs": 2, "batch_size": 64}}
    config = write_config(tmp_path, cfg)
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekd", "compile", str(config), "--out", str(out), "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # kill it as soon as distill has finished, in the middle of the later passes
    deadline = time.time() + 240
    killed = False
    while time.time() < deadline and proc.poll() is None:
        logs = list(out.glob("tiny-*/events.jsonl"))
        if logs and '"pass_": "distill", "status": "ran"' in logs[0].read_text():
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait()
    assert killed, f"compile ended before it could be killed: {proc.stderr.read().decode() if proc.stderr else ''}"
    run = next(out.glob("tiny-*"))
    assert not (run / "result.json").exists(), "a killed run must not look complete"

    resumed = edgekd.compile(config, out=out, resume=True, quiet=True)
    assert resumed.run_dir == run
    status = {p["pass"]: p["status"] for p in _manifest(run)["passes"]}
    assert status["baseline"] == "cached" and status["distill"] == "cached"
    assert status["report"] == "ran"

    fresh = edgekd.compile(config, out=tmp_path / "fresh", quiet=True)
    for name in ("onnx", "onnx_int8"):
        assert sha256_file(resumed.artifacts[name]) == sha256_file(fresh.artifacts[name]), name


def test_resume_without_earlier_run_is_an_error(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="--resume: no earlier run"):
        edgekd.compile(tiny, out=tmp_path / "runs", resume=True, quiet=True)
