"""Accuracy of deployed artifacts, measured in their own runtime."""

from __future__ import annotations

from pathlib import Path

import torch

from edgekd.backends.onnx_runtime import OrtModel
from edgekd.backends.runtimes import open_model


def onnx_accuracy(path: Path, x: torch.Tensor, y: torch.Tensor, threads: int | None = None) -> float:
    """Top-1 accuracy (percent) of an ONNX file run in ONNX Runtime on normalised inputs ``x``."""
    logits = OrtModel(path, threads).predict(x.numpy())
    return float((logits.argmax(1) == y.numpy()).mean() * 100)


def artifact_accuracy(
    path: Path, x: torch.Tensor, y: torch.Tensor, threads: int | None = None, delegate: str = "xnnpack"
) -> float:
    """Top-1 accuracy (percent) of any deployed artifact (``.onnx``, ``.tflite``) run in its own runtime."""
    logits = open_model(path, threads, delegate).predict(x.numpy())
    return float((logits.argmax(1) == y.numpy()).mean() * 100)
