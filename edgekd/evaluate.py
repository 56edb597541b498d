"""Accuracy of deployed artifacts, measured in their own runtime."""

from __future__ import annotations

from pathlib import Path

import torch

from edgekd.backends.onnx_runtime import OrtModel


def onnx_accuracy(path: Path, x: torch.Tensor, y: torch.Tensor, threads: int | None = None) -> float:
    """Top-1 accuracy (percent) of an ONNX file run in ONNX Runtime on normalised inputs ``x``."""
    logits = OrtModel(path, threads).predict(x.numpy())
    return float((logits.argmax(1) == y.numpy()).mean() * 100)
