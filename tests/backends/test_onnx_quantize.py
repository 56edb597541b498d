from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgekd.backends.onnx.lower import export_onnx
from edgekd.backends.onnx.quantize import quantize_static_onnx
from edgekd.backends.onnx.runtime import OrtModel
from edgekd.core.errors import DataError
from edgekd.models.zoo import build

REPO = Path(__file__).resolve().parents[2]
TINY = {"depth": 8, "width": 8, "in_channels": 1, "num_classes": 10}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A tiny ResNet trained for a few steps on the bundled Fashion-MNIST subset, exported to fp32 ONNX."""
    data = np.load(REPO / "edgekd" / "bundled" / "fashion-mnist-subset.npz")
    pick = np.random.default_rng(0).permutation(len(data["y_train"]))[:2048]
    x_train = (data["x_train"][pick].astype(np.float32) / 255.0 - 0.5) / 0.5
    y_train = torch.from_numpy(data["y_train"][pick].astype(np.int64))
    x_test = (data["x_test"][:256].astype(np.float32) / 255.0 - 0.5) / 0.5
    torch.manual_seed(0)
    model = build("resnet", TINY)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt = torch.from_numpy(x_train)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is far faster than two fighting other jobs
    try:
        for step in range(48):
            idx = slice((step * 64) % 2048, (step * 64) % 2048 + 64)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), y_train[idx]).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == data["y_test"][:256]).mean())
    assert accuracy > 0.3, f"the tiny model did not learn ({accuracy:.2f}); agreement checks would be trivial"
    path = export_onnx(model, xt[:1], tmp_path_factory.mktemp("fp32") / "fp32.onnx", dynamic_batch=True)
    return path, x_train[:64], x_test


def _initializers(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}


def test_uint8_qdq_per_channel_and_accurate(trained: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    fp32, calib, x_test = trained
    out = quantize_static_onnx(fp32, tmp_path / "q.onnx", calib, activation_type="uint8")
    assert out == tmp_path / "q.onnx" and sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]
    proto = onnx.load(str(out))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") >= 5 and ops.count("DequantizeLinear") >= 10
    inits = _initializers(proto)
    # weights: int8 initializers dequantized with one scale per output channel
    weight_dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None]
    weight_dq = [n for n in weight_dq if inits[n.input[0]].dtype == np.int8 and inits[n.input[0]].ndim == 4]
    assert weight_dq and all(inits[n.input[1]].size > 1 for n in weight_dq)
    # activations: QuantizeLinear zero points are uint8
    act_zp = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert act_zp and all(z.dtype == np.uint8 for z in act_zp)
    assert out.stat().st_size < fp32.stat().st_size

    ref = OrtModel(fp32).predict(x_test)
    got = OrtModel(out).predict(x_test)
    agreement = float((ref.argmax(1) == got.argmax(1)).mean())
    assert agreement >= 0.9, agreement


def test_int8_activations_are_symmetric(trained: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    fp32, calib, x_test = trained
    out = quantize_static_onnx(fp32, tmp_path / "q8.onnx", calib, activation_type="int8", method="percentile")
    proto = onnx.load(str(out))
    inits = _initializers(proto)
    act_zp = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert act_zp and all(z.dtype == np.int8 and not z.any() for z in act_zp)  # int8, zero point 0
    ref, got = OrtModel(fp32).predict(x_test), OrtModel(out).predict(x_test)
    assert float((ref.argmax(1) == got.argmax(1)).mean()) >= 0.85


def test_fixed_batch_model_calibrates(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build("resnet", TINY).eval()
    fp32 = export_onnx(model, torch.randn(1, 1, 28, 28), tmp_path / "fixed.onnx")  # batch fixed at 1
    calib = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
    out = quantize_static_onnx(fp32, tmp_path / "fixed.q.onnx", calib, per_channel=False, method="minmax")
    assert OrtModel(out).run(calib[:1]).shape == (1, 10)


def test_empty_or_misshaped_calibration_raises_data_error(
    trained: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    fp32, _, _ = trained
    with pytest.raises(DataError) as info:
        quantize_static_onnx(fp32, tmp_path / "q.onnx", np.zeros((0, 1, 28, 28), np.float32))
    assert str(fp32) in info.value.message and info.value.fix
    with pytest.raises(DataError, match="do not fit"):
        quantize_static_onnx(fp32, tmp_path / "q.onnx", np.zeros((4, 3, 32, 32), np.float32))
    assert not (tmp_path / "q.onnx").exists()
