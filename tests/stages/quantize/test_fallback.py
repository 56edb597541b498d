"""Per-layer fallback: on a model built so that one layer cannot survive INT8, that layer (and only it) goes
back to fp32 and accuracy returns; the precision table names it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.backends.onnx.lower import export_onnx
from edgekd.backends.onnx.runtime import OrtModel
from edgekd.stages.quantize.fallback import match_layers, quantize_with_fallback


class Sensitive(nn.Module):
    """conv -> pool -> fc1 -> fc2, where fc2 has one huge weight on an input that is always zero: its
    per-channel int8 scale (max|w| / 127) rounds every useful weight of fc2 to zero."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(32, 17)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(17, 10)
        with torch.no_grad():
            self.fc1.weight[16].zero_()
            self.fc1.bias[16] = -1.0  # relu: input 16 of fc2 is always 0
            self.fc2.weight.mul_(15.0)  # |w| <= 3.7 < half an int8 step (1000 / 127 / 2)
            self.fc2.weight[:, 16] = 1000.0
            self.fc2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu2(self.fc1(self.flatten(self.pool(self.relu(self.conv(x)))))))


def test_the_sensitive_layer_goes_back_to_fp32_and_accuracy_returns(tmp_path: Path) -> None:
    model = Sensitive().eval()
    x = torch.randn(256, 1, 28, 28)
    with torch.no_grad():
        labels = model(x).argmax(1).numpy()  # accuracy = agreement with the fp32 model (100% in fp32)
    fp32 = export_onnx(model, x[:1], tmp_path / "fp32.onnx")

    def evaluate(path: Path) -> float:
        return float((OrtModel(path).predict(x.numpy()).argmax(1) == labels).mean() * 100)

    layers = match_layers(fp32, model, x[:1])
    assert [(layer.module, layer.op) for layer in layers] == [("conv", "Conv"), ("fc1", "Gemm"), ("fc2", "Gemm")]
    out = tmp_path / "int8.onnx"
    result = quantize_with_fallback(
        fp32,
        out,
        x[:64].numpy(),
        evaluate,
        lambda acc: acc >= 95.0,
        layers,
        {"activation_type": "uint8", "per_channel": True},
    )
    assert result.int8_accuracy_all < 60.0  # all-INT8 breaks the model
    by_module = {layer.module: layer for layer in result.layers}
    assert by_module["fc2"].precision == "fp32" and by_module["fc2"].reason == "accuracy"
    assert by_module["conv"].precision == "int8" and by_module["fc1"].precision == "int8"
    assert by_module["fc2"].sensitivity == max(layer.sensitivity for layer in result.layers)
    assert result.accuracy >= 95.0 and result.excluded == [by_module["fc2"].node]
    assert evaluate(out) == result.accuracy  # the saved model is the one measured


def test_no_fallback_when_int8_already_meets_the_guard(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(1), nn.Linear(4 * 26 * 26, 10)).eval()
    x = torch.randn(64, 1, 28, 28)
    fp32 = export_onnx(model, x[:1], tmp_path / "fp32.onnx")
    layers = match_layers(fp32, model, x[:1])
    result = quantize_with_fallback(
        fp32, tmp_path / "q.onnx", x.numpy(), lambda _p: 99.0, lambda acc: acc >= 90, layers, {}
    )
    assert result.excluded == [] and all(layer.sensitivity is None for layer in result.layers)
    assert np.isfinite(result.accuracy)
