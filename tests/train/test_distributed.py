"""Data-parallel distillation: two real processes (gloo on CPU) end with the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, tiny_config, write_config


def test_two_processes_agree_and_learn(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        passes=[
            {
                "distill": {
                    "epochs": 2,
                    "batch_size": 32,
                    "augment": False,
                    "loss": {
                        "ce": 1.0,
                        "fitnet": {"weight": 1.0, "pairs": [{"student": "layer3", "teacher": "layer3"}]},
                    },
                }
            },
            {"report": {}},
        ],
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekd",
            "compile",
            str(write_config(tmp_path, cfg)),
            "--out",
            str(tmp_path / "runs"),
            "--nproc",
            "2",
            "--json",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)["student"]["distill"]
    assert d["distributed"]["processes"] == 2
    # gradients are all-reduced and BN buffers broadcast: both ranks hold the same weights
    assert d["distributed"]["max_weight_difference_between_ranks"] < 1e-6
    assert d["test_accuracy"] > 20.0 and len(d["epochs"]) == 2
    assert d["train_samples"] == 512


def test_worker_error_reaches_the_user(tmp_path: Path) -> None:
    """A NaN loss inside a torchrun worker surfaces as the same clear error, naming the rank and the term."""
    cfg = tiny_config(
        tmp_path,
        passes=[{"distill": {"epochs": 1, "optimizer": {"lr": 1e30}, "augment": False}}, {"report": {}}],
    )
    config, out = str(write_config(tmp_path, cfg)), str(tmp_path / "runs")
    r = subprocess.run(
        [sys.executable, "-m", "edgekd", "compile", config, "--out", out, "--nproc", "2", "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )
    assert r.returncode == 2, r.stderr
    assert "error [TrainingError]: distributed distillation failed in rank" in r.stderr
    assert "exploded" in r.stderr and "lower the learning rate" in r.stderr
    assert "Traceback" not in r.stderr
