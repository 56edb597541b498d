"""One small compile shared by the report tests: search (latency predicted), distill, INT8, lower, profile, report.

The target is a board that is not this host and has a latency predictor beside its YAML (a hand-written kernel
table), so the run exercises every latency source the report must tell apart: host stand-in measurements,
predictions, and an artifact the predictor cannot predict (INT8 kernels are not in the table).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgekd
from edgekd.api import CompileResult
from tests.helpers import tiny_config, write_config

TABLE = {
    "format": "edgekd-latency-predictor",
    "version": 1,
    "target": "test-board",
    "device": {"where": "a hand-written table (tests)", "threads": 1},
    "overhead_ms": 0.01,
    "input_ms_per_mb": 0.0,
    "kernel_types": {
        t: {"count_ms": 0.004, "ms_per_mmac": 0.02, "ms_per_mb": 0.05}
        for t in ("conv1x1", "conv3x3", "pool", "gemm", "reshape", "eltwise")
    },
}


def write_board(folder: Path, latency: str = "predictor") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test-board.yaml").write_text(
        "name: test-board\ndescription: a board this host cannot reach\ncpu_arch: aarch64\nbackends: [onnx]\n"
        f"precisions: [int8, fp32]\nruntime: {{name: litert, threads: 1}}\nlatency: {latency}\n"
        "quantization: {activation_type: uint8}\nprofile: {warmup: 2, runs: 10, rounds: 2}\n"
    )
    (folder / "test-board.predictor.json").write_text(json.dumps(TABLE))
    return folder / "test-board.yaml"


@pytest.fixture(scope="session")
def board_run(tmp_path_factory: pytest.TempPathFactory) -> CompileResult:
    tmp = tmp_path_factory.mktemp("board")
    search = {
        "space": {"blocks": [[1], [1, 2], [1]], "widths": [[4, 8], [8, 16], [16]], "kernel": [3]},
        "population": 3,
        "sample": 2,
        "iterations": 2,
        "batches": 1,
        "batch_size": 16,
        "budget": {"latency_ms": 1.0},
    }
    cfg = tiny_config(
        tmp,
        passes=[
            {"search": search},
            {"distill": {"epochs": 1, "batch_size": 64}},
            {"quantize": {"precision": "int8"}},
            {"lower": {"parity": {"samples": 32, "min_top1": 10.0, "min_cosine": 0.5}}},
            {"profile": {"warmup": 2, "runs": 10, "rounds": 2, "per_layer": 3}},
            {"report": {}},
        ],
    )
    del cfg["student"]
    return edgekd.compile(write_config(tmp, cfg), target=write_board(tmp), out=tmp / "runs", quiet=True)
