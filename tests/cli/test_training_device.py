"""model.yaml ``device``/``amp`` and the multi-node flags, as a user meets them on the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, tiny_config, write_config

DISTILL_ONLY = [{"distill": {"epochs": 1, "batch_size": 64, "augment": False}}, {"report": {}}]


def _compile(config: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekd", "compile", str(config), "--out", str(out), "-q", *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_this_machine_lacks_stops_before_any_run_folder(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tiny_config(tmp_path, passes=DISTILL_ONLY, device="cuda:0"))
    r = _compile(cfg, tmp_path / "runs")
    assert r.returncode == 2, r.stderr
    assert "device: cuda:0: PyTorch sees no CUDA GPU on this machine" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "runs").exists()


def test_the_result_says_where_distillation_ran(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tiny_config(tmp_path, passes=DISTILL_ONLY, device="cpu", amp="bf16"))
    r = _compile(cfg, tmp_path / "runs", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)["student"]["distill"]
    assert d["device"] == "cpu" and d["amp"] == "bf16"
    assert 0 < d["epochs"][0]["loss_kd"] < 10  # a finite loss, trained under autocast


def test_nnodes_without_a_rendezvous_endpoint_is_a_config_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tiny_config(tmp_path, passes=DISTILL_ONLY))
    r = _compile(cfg, tmp_path / "runs", "--nnodes", "2", "--node-rank", "1")
    assert r.returncode == 2, r.stderr
    assert "--nnodes 2 --node-rank 1: passes[0].distill" in r.stderr and "rdzv_endpoint" in r.stderr
    assert "Traceback" not in r.stderr
