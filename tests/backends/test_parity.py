from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgekd.backends.onnx.lower import export_onnx
from edgekd.backends.parity import check_parity
from edgekd.core.errors import ParityError
from edgekd.models.zoo import build

TINY = {"depth": 8, "width": 8, "in_channels": 1, "num_classes": 10}


@pytest.fixture
def exported(tmp_path: Path) -> tuple[nn.Module, Path, torch.Tensor]:
    torch.manual_seed(0)
    model = build("resnet", TINY).eval()
    path = export_onnx(model, torch.randn(1, 1, 28, 28), tmp_path / "m.onnx", dynamic_batch=True)
    return model, path, torch.randn(32, 1, 28, 28)


def _edit_initializer(src: Path, dst: Path, name_part: str, edit: Callable[[np.ndarray], np.ndarray]) -> None:
    proto = onnx.load(str(src))
    init = next(i for i in proto.graph.initializer if name_part in i.name and len(i.dims) == 2)
    init.CopyFrom(numpy_helper.from_array(edit(numpy_helper.to_array(init).copy()), init.name))
    onnx.save(proto, str(dst))


def test_correct_export_passes(exported: tuple[nn.Module, Path, torch.Tensor]) -> None:
    model, path, x = exported
    report = check_parity(model, path, x)
    assert report.passed and report.mode == "exact" and report.samples == 32
    assert report.max_abs_diff <= 1e-4 and report.top1_agreement == 100.0 and report.cosine > 0.9999
    report.raise_if_failed()
    assert json.loads(json.dumps(report.to_dict()))["tolerance"] == {"atol": 1e-4}


def test_broken_export_fails_exact(exported: tuple[nn.Module, Path, torch.Tensor], tmp_path: Path) -> None:
    model, path, x = exported
    broken = tmp_path / "broken.onnx"

    def nudge(w: np.ndarray) -> np.ndarray:
        w[0, 0] += 0.5
        return w

    _edit_initializer(path, broken, "fc", nudge)
    report = check_parity(model, broken, x)
    assert not report.passed and report.max_abs_diff > 1e-3
    with pytest.raises(ParityError) as info:
        report.raise_if_failed()
    assert str(broken) in info.value.message and "max_abs_diff" in info.value.message
    assert "atol" in info.value.message and "lower.parity" in (info.value.fix or "")


def test_quantized_mode_thresholds(exported: tuple[nn.Module, Path, torch.Tensor], tmp_path: Path) -> None:
    model, path, x = exported
    small, flipped = tmp_path / "small.onnx", tmp_path / "flipped.onnx"
    _edit_initializer(path, small, "fc", lambda w: w * 1.001)  # tiny drift: fine for quantized parity
    _edit_initializer(path, flipped, "fc", lambda w: -w)  # argmax becomes argmin

    assert not check_parity(model, small, x, mode="exact", atol=1e-6).passed
    ok = check_parity(model, small, x, mode="quantized")
    assert ok.passed and ok.cosine > 0.999 and ok.tolerance == {"min_cosine": 0.99, "min_top1": 95.0}

    bad = check_parity(model, flipped, x, mode="quantized")
    assert not bad.passed and bad.cosine < 0.99 and bad.top1_agreement < 95.0
    assert "cosine" in bad.reason and "top-1" in bad.reason
    with pytest.raises(ParityError, match=r"flipped\.onnx"):
        bad.raise_if_failed()
    # the same model passes once the thresholds allow it
    assert check_parity(model, flipped, x, mode="quantized", min_cosine=-1.0, min_top1=0.0).passed


def test_unknown_mode_rejected(exported: tuple[nn.Module, Path, torch.Tensor]) -> None:
    model, path, x = exported
    with pytest.raises(ValueError, match="exact"):
        check_parity(model, path, x, mode="close")
