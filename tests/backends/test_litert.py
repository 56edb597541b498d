"""TFLite (LiteRT) lowering: files converted by litert-torch load in the real LiteRT interpreter and match PyTorch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.backends.parity import check_parity
from edgekd.backends.tflite.lower import convert_tflite, import_litert_torch, unsupported_operator
from edgekd.backends.tflite.runtime import LiteRTModel, op_summary
from edgekd.core.errors import BackendUnavailable, ExportError


def test_fp32_nhwc_file_takes_channel_last_float_input_and_matches_pytorch(tiny_tflite: dict) -> None:
    m = LiteRTModel(tiny_tflite["files"]["fp32"], threads=1)
    assert m.input_shape == (1, 28, 28, 1) and m.input_dtype == np.float32
    r = check_parity(tiny_tflite["model"], tiny_tflite["files"]["fp32"], tiny_tflite["x"], "exact", atol=1e-4)
    assert r.passed and r.max_abs_diff < 1e-4 and r.top1_agreement == 100.0, r.reason


def test_nchw_io_keeps_pytorchs_layout(tiny_tflite: dict) -> None:
    m = LiteRTModel(tiny_tflite["files"]["fp32_nchw"], threads=1)
    assert m.input_shape == (1, 1, 28, 28)
    r = check_parity(tiny_tflite["model"], tiny_tflite["files"]["fp32_nchw"], tiny_tflite["x"], "exact", atol=1e-4)
    assert r.passed, r.reason


def test_fp16_stores_half_precision_weights_and_stays_close(tiny_tflite: dict) -> None:
    files = tiny_tflite["files"]
    graph = op_summary(files["fp16"])
    assert graph["float_operators"].get("DEQUANTIZE", 0) > 0  # fp16 weights, dequantized for fp32 kernels
    assert files["fp16"].stat().st_size < files["fp32"].stat().st_size  # a tiny model's file is mostly graph
    r = check_parity(tiny_tflite["model"], files["fp16"], tiny_tflite["x"], "quantized", min_cosine=0.999, min_top1=95)
    assert r.passed and r.max_abs_diff < 0.05, r.reason


@pytest.mark.parametrize("name", ["int8", "int8_aeq"])
def test_int8_is_full_integer_with_quantized_io_and_keeps_top1(tiny_tflite: dict, name: str) -> None:
    path = tiny_tflite["files"][name]
    graph = op_summary(path)
    assert graph["input_type"] == "INT8" and graph["output_type"] == "INT8"
    assert graph["float_operators"] == {}, "no operator left in float"
    m = LiteRTModel(path, threads=1)
    assert m.input_dtype == np.int8 and m.input["quantization"][0] > 0  # a real scale, applied by predict()
    r = check_parity(tiny_tflite["model"], path, tiny_tflite["x"], "quantized", min_cosine=0.99, min_top1=90)
    assert r.passed, r.reason
    assert path.stat().st_size < 0.8 * tiny_tflite["files"]["fp32"].stat().st_size  # tiny: mostly graph, not weights


def test_int8_accuracy_is_computed_on_dequantized_outputs(tiny_tflite: dict) -> None:
    x = tiny_tflite["x"]
    with torch.no_grad():
        ref = tiny_tflite["model"](x).numpy()
    out = LiteRTModel(tiny_tflite["files"]["int8"], threads=1).predict(x.numpy())
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.abs(out - ref).max() < 0.25 * np.abs(ref).max()  # logits on the float scale, not raw int8 codes


def test_xnnpack_and_builtin_kernels_agree(tiny_tflite: dict) -> None:
    x = tiny_tflite["x"][:8].numpy()
    a = LiteRTModel(tiny_tflite["files"]["int8"], threads=1, delegate="xnnpack").predict(x)
    b = LiteRTModel(tiny_tflite["files"]["int8"], threads=1, delegate="none").predict(x)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.875


class _Kth(nn.Module):
    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.kthvalue(y, 3, dim=2).values


class KthNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.pool = _Kth()
        self.fc = nn.Linear(4 * 26, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x)).flatten(1))


def test_operator_without_litert_lowering_is_named_with_its_layer(tmp_path: Path) -> None:
    pytest.importorskip("litert_torch")
    with pytest.raises(ExportError) as info:
        convert_tflite(KthNet().eval(), torch.randn(1, 1, 28, 28), tmp_path / "kth.tflite", "fp32")
    msg = str(info.value)
    assert "operator 'aten.kthvalue' (called in layer 'pool') has no LiteRT lowering" in msg
    assert str(tmp_path / "kth.tflite") in msg and "another backend" in msg
    assert not list(tmp_path.iterdir()), "no file, not even a temp file, is left behind"


def test_unsupported_operator_parsing() -> None:
    assert unsupported_operator("RuntimeError: Lowering not found: aten.kthvalue.default While executing") == (
        "aten.kthvalue"
    )
    assert unsupported_operator("shape mismatch") is None


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # what Python does for a package that is not installed
    with pytest.raises(BackendUnavailable) as info:
        import_litert_torch()
    assert "pip install 'edgekd[tflite]'" in str(info.value) and "litert-torch is not installed" in str(info.value)
