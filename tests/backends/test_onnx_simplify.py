"""ONNX simplification folds constants and keeps the outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.backends.onnx.lower import export_onnx
from edgekd.backends.onnx.runtime import OrtModel
from edgekd.backends.onnx.simplify import simplify_onnx


class Foldable(nn.Module):
    """A scale computed from constants at every call: the exporter leaves ops that a simplifier folds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.register_buffer("a", torch.tensor([2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.sqrt(self.a * 8.0) + torch.ones(1) * 0.5  # constant
        y = self.conv(x) * scale
        return y.reshape(y.shape[0], -1).mean(1, keepdim=True)


def test_simplify_folds_constants_and_keeps_outputs(tmp_path: Path) -> None:
    model = Foldable().eval()
    x = torch.randn(3, 1, 8, 8)
    raw = export_onnx(model, x[:1], tmp_path / "raw.onnx", opset=17, dynamic_batch=True)
    info = simplify_onnx(raw, tmp_path / "simple.onnx")
    assert info["nodes_after"] < info["nodes_before"]
    assert "Sqrt" not in info["operators"]
    a, b = OrtModel(raw, 1).predict(x.numpy()), OrtModel(tmp_path / "simple.onnx", 1).predict(x.numpy())
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(b, model(x).detach().numpy(), atol=1e-5)
