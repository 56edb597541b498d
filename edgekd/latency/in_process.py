"""A quick in-process latency of a PyTorch model in ONNX Runtime (batch 1), for search budgets.

The profile pass measures deployed artifacts in a separate runner process with many repeats; this
is the cheaper measurement the search uses for each of its candidates (median of ``runs``).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.backends.onnx.lower import export_onnx
from edgekd.backends.onnx.runtime import OrtModel


def quick_latency_ms(
    model: nn.Module, input_shape: tuple[int, ...], threads: int | None = None, warmup: int = 10, runs: int = 50
) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, torch.zeros(1, *input_shape), Path(tmp) / "candidate.onnx")
        ort = OrtModel(path, threads)
        x = np.random.default_rng(0).standard_normal((1, *input_shape)).astype(np.float32)
        for _ in range(warmup):
            ort.run(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            ort.run(x)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)
