"""QAT's straight-through quantizer simulates ONNX Runtime's QDQ grid: after snapping, the exported (BN-folded)
weights sit exactly on the per-channel int8 grid, and ORT's quantizer reproduces them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from edgekd.backends.onnx.lower import export_onnx
from edgekd.backends.onnx.quantize import quantize_static_onnx
from edgekd.models.zoo import build
from edgekd.stages.quantize.qat import ActFakeQuant, calibrate, conv_bn_pairs, fake_quantized, snap_weights
from tests.helpers import TINY_TEACHER


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = build("resnet", TINY_TEACHER)
    for m in model.modules():  # BN statistics and affine parameters far from identity: folding matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.2, 3.0)
            m.running_mean.uniform_(-0.5, 0.5)
            nn.init.uniform_(m.weight, 0.5, 2.0)
    return model.eval()


def _initializers(path: Path) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def test_conv_bn_pairs_follow_the_block_structure() -> None:
    pairs = dict(conv_bn_pairs(_model()))
    assert pairs["stem.0"] == "stem.1" and pairs["layer1.0.conv2"] == "layer1.0.bn2"
    assert pairs["layer2.0.shortcut.0"] == "layer2.0.shortcut.1"


def test_snapped_weights_fold_onto_the_int8_grid(tmp_path: Path) -> None:
    model = _model()
    x = torch.randn(32, 1, 28, 28)
    with fake_quantized(model) as twins:
        calibrate(model, twins, x)
        snap_weights(twins)
    path = export_onnx(model, x[:1], tmp_path / "m.onnx")
    weights = [w for w in _initializers(path).values() if w.ndim == 4]
    assert len(weights) == 9
    for w in weights:
        q = w.reshape(w.shape[0], -1) / (np.abs(w.reshape(w.shape[0], -1)).max(1, keepdims=True) / 127)
        assert np.abs(q - np.round(q)).max() < 2e-3
    # ORT's static quantizer keeps exactly these weights (its scale is max|w| / 127 per channel too)
    int8 = quantize_static_onnx(path, tmp_path / "q.onnx", x.numpy(), per_channel=True)
    inits, fp32 = _initializers(int8), _initializers(path)
    checked = 0
    for name, w in inits.items():
        if w.dtype == np.int8 and w.ndim == 4:
            base = name.removesuffix("_quantized")
            scale = inits[f"{base}_scale"].reshape(-1, 1, 1, 1)
            assert np.abs(np.abs(w).max(axis=(1, 2, 3)) - 127).max() == 0  # the largest weight is +-127
            assert np.allclose(w * scale, fp32[base], atol=1e-5)  # int8 weights x scale == the snapped weights
            checked += 1
    assert checked == 9


def test_fake_quant_forward_tracks_the_ort_int8_model(tmp_path: Path) -> None:
    from edgekd.backends.onnx.runtime import OrtModel

    model = _model()
    x = torch.randn(64, 1, 28, 28)
    with fake_quantized(model) as twins:
        calibrate(model, twins, x)
        snap_weights(twins)
        with torch.no_grad():
            simulated = model(x)
    int8 = quantize_static_onnx(export_onnx(model, x[:1], tmp_path / "m.onnx"), tmp_path / "q.onnx", x.numpy())
    real = torch.from_numpy(OrtModel(int8).predict(x.numpy()))
    cos = torch.nn.functional.cosine_similarity(simulated, real, dim=1).mean()
    assert cos > 0.98, cos


def test_activation_quantizer_is_straight_through_and_symmetric_for_int8() -> None:
    q = ActFakeQuant("int8")
    q.train()
    x = torch.linspace(-2, 3, 101, requires_grad=True)
    y = q(x)
    y.sum().backward()
    assert x.grad is not None and torch.all(x.grad == 1)  # inside the range the gradient passes through
    assert float(q.lo) == -2 and float(q.hi) == 3 and float(y.detach().abs().max()) <= 3.0 + 1e-6
