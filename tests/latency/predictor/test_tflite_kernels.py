"""TFLite kernel detection: the operators of real converted files, keyed and counted like the ONNX kernels."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.backends.onnx.lower import export_onnx
from edgekd.core.errors import ProfilingError
from edgekd.latency.predictor.calibrate import build_spec
from edgekd.latency.predictor.kernels import Graph, detect
from edgekd.latency.predictor.tflite_kernels import detect_tflite, kernel_table_tflite
from edgekd.models.count import count_macs
from edgekd.models.zoo.resnet import CifarResNet

PLAIN = {
    "kind": "plain", "in_channels": 3, "num_classes": 10, "size": 16,
    "layers": [["conv", 16, 3, 1], ["sep", 32, 3, 2], ["maxpool", 0, 0, 0], ["conv", 24, 1, 1]],
}  # fmt: skip
DENSE = ("conv", "dwconv", "gconv", "deconv", "gemm")


class FloatEnds(nn.Module):
    """Float operators before the first and after the last quantizable one: the INT8 file keeps float I/O and
    quantizes / dequantizes inside."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(torch.sin(x))).mean((2, 3))
        return torch.exp(self.fc(y))


def _dense(g: Graph) -> list[str]:
    """The convolution and dense kernel types, without the ``q`` prefix."""
    return [t for t in (k.type.removeprefix("q") for k in g.kernels) if t.split(".")[0].startswith(DENSE)]


def _dense_macs(g: Graph) -> float:
    return sum(k.macs for k in g.kernels if k.type.removeprefix("q").split(".")[0].startswith(DENSE))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Converted files of a plain CNN (conv, depthwise-separable, max pool, 1x1) and a two-stage ResNet: fp32, fp16,
    INT8 (PT2E and ai-edge-quantizer), their ONNX exports; and a float-I/O INT8 file."""
    pytest.importorskip("litert_torch")
    from edgekd.backends.tflite.lower import convert_tflite

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tflite-kernels")
    example = torch.zeros(1, 3, 16, 16)
    cal = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)
    plain = build_spec(PLAIN).eval()
    resnet = CifarResNet(blocks=[1, 1], widths=[16, 32], kernel=3, in_channels=3, num_classes=10).eval()
    out = {
        "plain.onnx": export_onnx(plain, example, d / "plain.onnx"),
        "resnet.onnx": export_onnx(resnet, example, d / "resnet.onnx"),
        "plain_fp32": convert_tflite(plain, example, d / "plain_fp32.tflite"),
        "plain_fp16": convert_tflite(plain, example, d / "plain_fp16.tflite", "fp16"),
        "plain_pt2e": convert_tflite(plain, example, d / "plain_pt2e.tflite", "int8", calibration=cal),
        "resnet_fp32": convert_tflite(resnet, example, d / "resnet_fp32.tflite"),
        "resnet_pt2e": convert_tflite(resnet, example, d / "resnet_pt2e.tflite", "int8", calibration=cal),
        "float_io_pt2e": convert_tflite(FloatEnds().eval(), example, d / "fe.tflite", "int8", calibration=cal),
    }
    out["plain_aeq"] = convert_tflite(
        plain, example, d / "plain_aeq.tflite", "int8", calibration=cal, int8_method="ai-edge-quantizer"
    )
    return out


@pytest.mark.parametrize("name", ["plain", "resnet"])
@pytest.mark.parametrize("block", [1, 16])
def test_fp32_convolutions_match_the_onnx_detector(files: dict[str, Path], name: str, block: int) -> None:
    onnx_g = detect(files[f"{name}.onnx"], channel_block=block)
    tfl = detect_tflite(files[f"{name}_fp32"], channel_block=block)
    assert _dense_macs(tfl) == pytest.approx(_dense_macs(onnx_g), rel=0.01)
    # the same keys, alignment / padding suffixes included (in any order: ONNX Runtime's optimiser may schedule a
    # shortcut convolution after the main branch's)
    assert Counter(_dense(tfl)) == Counter(_dense(onnx_g))
    if name == "plain" and block == 1:
        assert Counter(_dense(tfl)) == {"conv3x3.a16": 1, "dwconv.a16": 1, "conv1x1.a16": 1, "conv1x1.a8": 1, "gemm": 1}
    if name == "resnet":  # no pooling before the classifier: every MAC is a conv or the fc
        model = CifarResNet(blocks=[1, 1], widths=[16, 32], kernel=3, in_channels=3, num_classes=10)
        assert _dense_macs(tfl) == count_macs(model, (3, 16, 16))
    assert tfl.input_bytes == onnx_g.input_bytes == 3 * 16 * 16 * 4


def test_layers_map_to_one_kernel_each(files: dict[str, Path]) -> None:
    g = detect_tflite(files["plain_fp32"])
    # conv-bn-relu is one CONV_2D; the stride-2 depthwise reads an explicitly padded input (PyTorch's symmetric
    # padding is not TFLite's SAME at stride 2); the NHWC wrapper adds no transpose; the classifier is MEAN + FC
    assert [k.type for k in g.kernels] == [
        "conv3x3.a16", "pad", "dwconv.a16", "conv1x1.a16", "pool", "conv1x1.a8", "gpool", "gemm",
    ]  # fmt: skip
    conv, pad, dw, _, pool, _, gpool, fc = g.kernels
    assert conv.out_shape == [1, 16, 16, 16] and conv.nodes == ["CONV_2D#0"]
    assert conv.macs == 16 * 16 * 16 * 3 * 9 and conv.weight_bytes == (16 * 27 + 16) * 4  # weights and bias
    assert conv.bytes == (16 * 16 * 3 + 16 * 16 * 16) * 4 + conv.weight_bytes
    assert pad.macs == 0 and pad.bytes == (16 * 16 * 16 + 18 * 18 * 16) * 4
    assert dw.macs == 8 * 8 * 16 * 9 and dw.weight_bytes == (9 * 16 + 16) * 4
    assert pool.out_shape == [1, 4, 4, 32] and pool.macs == 4 * 4 * 32 * 4  # every output reads a 2x2 window
    assert gpool.macs == 4 * 4 * 24  # a global pool reads each input once
    assert fc.macs == 10 * 24 and fc.weight_bytes == (10 * 24 + 10) * 4
    assert g.weight_bytes == sum(k.weight_bytes for k in (conv, dw, fc, g.kernels[3], g.kernels[5]))


@pytest.mark.parametrize("method", ["pt2e", "aeq"])
def test_int8_kernels_are_prefixed_and_weights_shrink(files: dict[str, Path], method: str) -> None:
    fp32, int8 = detect_tflite(files["plain_fp32"]), detect_tflite(files[f"plain_{method}"])
    assert all(k.type.startswith("q") for k in int8.kernels)
    assert [k.type for k in int8.kernels] == ["q" + k.type for k in fp32.kernels]
    assert [k.macs for k in int8.kernels] == [k.macs for k in fp32.kernels]
    assert 0.2 <= int8.weight_bytes / fp32.weight_bytes <= 0.35  # int8 weights, int32 biases
    # full-integer I/O: the input is int8 and there is no quantize kernel
    assert int8.input_bytes == fp32.input_bytes / 4 and "quant" not in {k.type for k in int8.kernels}


def test_float_io_int8_file_has_quant_kernels_at_its_boundary(files: dict[str, Path]) -> None:
    g = detect_tflite(files["float_io_pt2e"])
    types = [k.type for k in g.kernels]
    assert types[:3] == ["other", "quant", "qconv3x3.a16"]  # SIN in float, then QUANTIZE into the int8 conv
    assert types[-2:] == ["quant", "other"]  # DEQUANTIZE of the fc output, EXP in float
    assert "qgemm" in types and g.input_bytes == 16 * 16 * 3 * 4
    quant = g.kernels[1]
    assert quant.macs == 0 and quant.bytes == 16 * 16 * 3 * (4 + 1) and quant.weight_bytes == 0


def test_residual_adds_are_eltwise_kernels(files: dict[str, Path]) -> None:
    for key, want in (("resnet_fp32", "eltwise"), ("resnet_pt2e", "qeltwise")):
        g = detect_tflite(files[key])
        adds = [k for k in g.kernels if k.type == want]
        assert [k.out_shape for k in adds] == [[1, 16, 16, 16], [1, 8, 8, 32]], key
        size = 4 if want == "eltwise" else 1
        assert [k.macs for k in adds] == [4096, 2048] and [k.bytes for k in adds] == [3 * 4096 * size, 3 * 2048 * size]
        assert [k.type.removeprefix("q").split(".")[0] for k in g.kernels].count("conv3x3") == 5
    ratio = detect_tflite(files["resnet_pt2e"]).weight_bytes / detect_tflite(files["resnet_fp32"]).weight_bytes
    assert 0.2 <= ratio <= 0.35


def test_fp16_weight_dequantize_is_folded(files: dict[str, Path]) -> None:
    fp32, fp16 = detect_tflite(files["plain_fp32"]), detect_tflite(files["plain_fp16"])
    # the file has a DEQUANTIZE per weight tensor: none is a kernel, and the weights count as constants
    assert [(k.type, k.macs, k.bytes) for k in fp16.kernels] == [(k.type, k.macs, k.bytes) for k in fp32.kernels]
    assert fp16.weight_bytes == fp32.weight_bytes  # what the kernels read once the weights are expanded to fp32


def test_kernel_table_rows_are_json(files: dict[str, Path]) -> None:
    rows = kernel_table_tflite(files["resnet_fp32"])
    assert json.loads(json.dumps(rows)) == rows
    assert rows[0]["type"] == "conv3x3.a16" and set(rows[0]) == {
        "type", "nodes", "macs", "bytes", "out_shape", "weight_bytes",
    }  # fmt: skip


def test_a_file_that_is_not_tflite_names_the_file(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    onnx_file = export_onnx(build_spec(PLAIN).eval(), torch.zeros(1, 3, 16, 16), tmp_path / "model.onnx")
    for path in (onnx_file, tmp_path / "missing.tflite"):
        with pytest.raises(ProfilingError) as info:
            detect_tflite(path)
        assert str(path) in str(info.value) and "cannot read as a TFLite model" in str(info.value)
        assert info.value.fix and ".tflite" in info.value.fix
    with pytest.raises(ValueError, match="channel_block"):
        detect_tflite(onnx_file, channel_block=0)
