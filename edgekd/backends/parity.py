"""Check that a deployed artifact reproduces the PyTorch model it came from."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.backends.base import Predictor, open_model
from edgekd.core.errors import ParityError

MODES = ("exact", "quantized")


@dataclass
class ParityReport:
    """Torch-vs-artifact agreement on one batch of inputs; ``passed`` says whether ``tolerance`` held."""

    artifact: str
    mode: str
    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float
    top1_agreement: float
    tolerance: dict[str, float] = field(default_factory=dict)
    passed: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def raise_if_failed(self) -> None:
        """Raise ParityError naming the artifact, the broken figure and its tolerance."""
        if not self.passed:
            raise ParityError(
                f"{self.artifact} does not match the PyTorch model ({self.mode} parity, {self.samples} samples): "
                f"{self.reason}",
                fix="check the export/quantization step (opset, calibration data), "
                "or loosen lower.parity in model.yaml if this drift is acceptable",
            )


def _cosine_per_sample(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    denom = na * nb
    cos = np.divide((a * b).sum(axis=1), denom, out=np.zeros(len(a)), where=denom > 0)
    cos[(na == 0) & (nb == 0)] = 1.0  # two all-zero outputs agree
    return cos


def check_parity(
    model: nn.Module,
    artifact_path: str | os.PathLike[str],
    inputs: torch.Tensor,
    mode: str = "exact",
    atol: float = 1e-4,
    min_cosine: float = 0.99,
    min_top1: float = 95.0,
    threads: int | None = None,
    delegate: str = "xnnpack",
    predictor: Predictor | None = None,
) -> ParityReport:
    """Run ``model`` and the artifact (``.onnx`` in ONNX Runtime, ``.tflite`` in LiteRT) on ``inputs`` and compare.

    exact: passes iff max |torch - onnx| <= atol. quantized: passes iff mean per-sample cosine >= min_cosine
    and top-1 agreement (percent) >= min_top1. ``predictor`` runs the artifact instead of the runtime its suffix
    names (e.g. a TensorRT engine).
    """
    if mode not in MODES:
        raise ValueError(f"parity mode must be one of {MODES}, got {mode!r}")
    if len(inputs) == 0:
        raise ValueError("check_parity needs at least one input sample")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(inputs).detach().cpu().float().numpy()
    finally:
        model.train(was_training)
    runner = predictor or open_model(artifact_path, threads=threads, delegate=delegate)
    held = inputs.detach().cpu()
    got = runner.predict((held.float() if held.is_floating_point() else held).numpy())
    artifact = str(artifact_path)
    if got.shape != expected.shape:
        return ParityReport(
            artifact, mode, len(inputs), float("inf"), float("inf"), 0.0, 0.0,
            _tolerance(mode, atol, min_cosine, min_top1), False,
            f"output shape {tuple(got.shape)} differs from PyTorch's {tuple(expected.shape)}",
        )  # fmt: skip
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    max_abs = float(np.nan_to_num(diff.max(), nan=np.inf))
    mean_abs = float(np.nan_to_num(diff.mean(), nan=np.inf))
    cosine = float(np.nan_to_num(_cosine_per_sample(expected, got).mean(), nan=0.0))
    flat_e, flat_g = expected.reshape(len(expected), -1), got.reshape(len(got), -1)
    top1 = float((flat_e.argmax(axis=1) == flat_g.argmax(axis=1)).mean() * 100.0)
    tolerance = _tolerance(mode, atol, min_cosine, min_top1)
    if mode == "exact":
        passed = max_abs <= atol
        reason = f"max_abs_diff {max_abs:.3g} {'<=' if passed else '>'} atol {atol:g}"
    else:
        problems = []
        if not cosine >= min_cosine:
            problems.append(f"mean cosine {cosine:.4f} < min_cosine {min_cosine:g}")
        if not top1 >= min_top1:
            problems.append(f"top-1 agreement {top1:.1f}% < min_top1 {min_top1:g}%")
        passed = not problems
        reason = (
            "; ".join(problems)
            if problems
            else (f"mean cosine {cosine:.4f} >= {min_cosine:g} and top-1 agreement {top1:.1f}% >= {min_top1:g}%")
        )
    return ParityReport(artifact, mode, len(inputs), max_abs, mean_abs, cosine, top1, tolerance, passed, reason)


def _tolerance(mode: str, atol: float, min_cosine: float, min_top1: float) -> dict[str, float]:
    return {"atol": atol} if mode == "exact" else {"min_cosine": min_cosine, "min_top1": min_top1}
