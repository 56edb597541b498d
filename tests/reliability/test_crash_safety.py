"""SIGKILL at a random point of every pass (search and prune in a second pipeline), then --resume: the run
finishes with the same artifacts.

Training on CPU with a fixed seed and thread count is deterministic here, so "the same" is
byte-identical (sha256), not a tolerance.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import edgekd
from edgekd.core.artifacts import sha256_file
from tests.helpers import REPO, tiny_config, write_config

PASSES = ["baseline", "distill", "quantize", "lower", "profile", "report"]
COMPARED = ("onnx", "onnx_int8", "teacher_onnx")
#: the second pipeline: the student found by search, then distilled and pruned
SEARCH_PRUNE_PASSES = ["search", "distill", "prune", "lower", "report"]
SEARCH_PRUNE_COMPARED = ("onnx",)


def _config(folder: Path) -> Path:
    cfg = tiny_config(folder)
    cfg["passes"][0] = {"distill": {"epochs": 2, "batch_size": 64}}
    return write_config(folder, cfg)


def _search_prune_config(folder: Path) -> Path:
    search = {
        "space": {"blocks": [[1], [1, 2], [1]], "widths": [[4, 8], [8, 16], [16]], "kernel": [3]},
        "population": 3, "sample": 2, "iterations": 4, "batches": 2, "batch_size": 16, "budget": {"params": 30000},
    }  # fmt: skip
    prune = {"ratio": 0.5, "steps": 2, "round_to": 2, "recovery": {"epochs": 1}}
    passes = [{"search": search}, {"distill": {"epochs": 1, "batch_size": 64}}, {"prune": prune}]
    cfg = tiny_config(folder, passes=[*passes, {"lower": {"parity": {"samples": 64}}}, {"report": {}}])
    del cfg["student"]  # the search picks it
    return write_config(folder, cfg)


def _start(config: Path, out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "edgekd", "compile", str(config), "--out", str(out), "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_during(proc: subprocess.Popen[bytes], out: Path, pass_name: str, delay: float) -> bool:
    """SIGKILL ``delay`` seconds after ``pass_name`` started; False if the compile ended first."""
    marker = f'"event": "pass_start", "pass_": "{pass_name}"'
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        logs = list(out.glob("tiny-*/events.jsonl"))
        if logs and marker in logs[0].read_text():
            time.sleep(delay)
            if proc.poll() is not None:
                return False
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.wait()
    return False


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("reference")
    config = _config(folder)
    res = edgekd.compile(config, out=folder / "runs", quiet=True)
    return config, {name: sha256_file(res.artifacts[name]) for name in COMPARED}


@pytest.fixture(scope="module")
def search_prune_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("reference-search-prune")
    config = _search_prune_config(folder)
    res = edgekd.compile(config, out=folder / "runs", quiet=True)
    return config, {name: sha256_file(res.artifacts[name]) for name in SEARCH_PRUNE_COMPARED}


@pytest.mark.parametrize("pass_name", PASSES)
def test_kill_in_pass_then_resume(pass_name: str, reference: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    _kill_then_resume(pass_name, reference, PASSES, COMPARED, tmp_path)


@pytest.mark.parametrize("pass_name", ["search", "prune"])
def test_kill_in_search_or_prune_then_resume(
    pass_name: str, search_prune_reference: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    _kill_then_resume(pass_name, search_prune_reference, SEARCH_PRUNE_PASSES, SEARCH_PRUNE_COMPARED, tmp_path)


def _kill_then_resume(
    pass_name: str, reference: tuple[Path, dict[str, str]], passes: list[str], compared: tuple[str, ...], tmp_path: Path
) -> None:
    config, expected = reference
    out = tmp_path / "runs"
    delay = random.Random(pass_name).uniform(0.0, 0.4)
    killed = _kill_during(_start(config, out), out, pass_name, delay)
    if not killed:
        pytest.skip(f"the compile finished {pass_name} within {delay:.2f}s, before the kill landed")
    run = next(out.glob("tiny-*"))
    if (run / "result.json").exists():  # written last and atomically: present means everything else is there
        assert pass_name == "report" and (run / "report.md").is_file()
        assert json.loads((run / "result.json").read_text())["artifacts"]
    for f in run.iterdir():  # whatever the kill left is either complete or a temp file, never a torn artifact
        if f.suffix == ".onnx":
            import onnx

            onnx.checker.check_model(str(f))
    tampered = run / "student.onnx"
    if tampered.exists():  # a corrupted file in the run folder must be replaced from the verified cache
        tampered.write_bytes(b"tampered")

    res = edgekd.compile(config, out=out, resume=True, quiet=True)
    assert res.run_dir == run
    manifest = json.loads((run / "manifest.json").read_text())
    statuses = {p["pass"]: p["status"] for p in manifest["passes"]}
    for done in passes[: passes.index(pass_name)]:
        if done != "report":
            assert statuses[done] == "cached", (done, statuses)
    for name in compared:
        assert sha256_file(res.artifacts[name]) == expected[name], name
    for art in manifest["artifacts"].values():
        assert sha256_file(run / art["path"]) == art["sha256"]


def test_concurrent_compiles_into_one_out(tmp_path: Path) -> None:
    config = _config(tmp_path)
    out = tmp_path / "runs"
    procs = [_start(config, out) for _ in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    runs = sorted(out.glob("tiny-*"))
    assert len(runs) == 2, "each compile gets its own run folder"
    shas = [
        {n: json.loads((r / "manifest.json").read_text())["artifacts"][n]["sha256"] for n in COMPARED} for r in runs
    ]
    assert shas[0] == shas[1]
    for r in runs:
        for art in json.loads((r / "manifest.json").read_text())["artifacts"].values():
            assert sha256_file(r / art["path"]) == art["sha256"]
    for entry in (out / ".cache").iterdir():  # every cache entry is complete and verifies
        assert not entry.name.startswith("."), f"temp dir left behind: {entry}"
        state = json.loads((entry / "state.json").read_text())
        for rel, sha in state["files"].items():
            assert sha256_file(entry / rel) == sha


def test_the_same_run_folder_is_locked(tmp_path: Path) -> None:
    from edgekd.compiler.run_folder import RunLock
    from edgekd.core.errors import PipelineError

    with RunLock(tmp_path), pytest.raises(PipelineError, match="in use by another edgekd process"), RunLock(tmp_path):
        pass


def test_run_name_cannot_escape_the_out_folder(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, name="../../escaped")
    cfg["passes"] = [{"lower": {}}, {"report": {}}]
    res = edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "out" / "runs", quiet=True)
    assert res.run_dir.resolve().parent == (tmp_path / "out" / "runs").resolve()
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.glob("escaped*"))
