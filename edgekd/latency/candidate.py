"""The latency of a PyTorch model measured the way the profile pass measures artifacts: written as the file the
target ships (fp32 or INT8 ONNX, fp32 or full-INT8 ``.tflite``: :mod:`edgekd.latency.predictor.artifacts`) and timed
by the standalone runner (:mod:`edgekd.latency.measure`) with the target's warm-up, runs, interleaved rounds and
threads, batch 1, p50. The search's candidates and the prune pass's ``until.latency_ms`` use it, so a budget is
in the same units as the report's figures."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from edgekd.backends.onnx.lower import export_onnx
from edgekd.config.target import Timing
from edgekd.latency.measure import measure
from edgekd.latency.predictor.artifacts import ArtifactSettings, write_artifact
from edgekd.latency.predictor.files import PredictorKind
from edgekd.models.text import token_inputs


def measured_latency_ms(
    model: nn.Module,
    input_shape: tuple[int, ...],
    timing: Timing,
    kind: PredictorKind | None = None,
    settings: ArtifactSettings | None = None,
    delegate: str = "xnnpack",
) -> float:
    """Batch-1 p50 of ``model`` written as a file of ``kind`` (default fp32 ONNX), measured on this host by the
    runner with ``timing``; a text model (packed token inputs ``(inputs, length)``) is timed as fp32 ONNX at
    ``length`` tokens."""
    names = token_inputs(model)
    seq_len = None
    with tempfile.TemporaryDirectory(prefix="edgekd-candidate-") as tmp:
        if names is not None:  # token ids 1, a mask over the first half (a real sample's shape of inputs)
            seq_len = int(input_shape[-1])
            example = torch.ones(1, *input_shape, dtype=torch.long)
            if "attention_mask" in names:
                example[:, names.index("attention_mask"), max(1, seq_len // 2) :] = 0
            if "token_type_ids" in names:
                example[:, names.index("token_type_ids")] = 0
            path = export_onnx(model, example, Path(tmp) / "candidate.onnx")
        else:
            path = write_artifact(model, input_shape, kind or PredictorKind(), Path(tmp) / "candidate", settings)
        (stats,) = measure(
            [path], threads=timing.threads, warmup=timing.warmup, runs=timing.runs, rounds=timing.rounds, batch=1,
            seq_len=seq_len, tflite_delegate=delegate,
        )  # fmt: skip
    return stats.p50_ms


def describe(timing: Timing, kind: PredictorKind | None = None) -> str:
    k = kind or PredictorKind()
    runtime = "ONNX Runtime" if k.artifact == "onnx" else "LiteRT"
    threads = f"{timing.threads} threads" if timing.threads else "default threads"
    return (
        f"measured on this host by the standalone runner, as the profile pass: {k.describe} files in {runtime}, "
        f"batch 1, {threads}, {timing.warmup} warm-up, {timing.runs} runs x {timing.rounds} rounds, p50"
    )
