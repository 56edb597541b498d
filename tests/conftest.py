"""Shared fixtures (helpers live in tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import tiny_config, write_config


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Path of a valid tiny model.yaml in a temp folder."""
    return write_config(tmp_path, tiny_config(tmp_path))


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny ResNet (seeded) and its TFLite files, converted once per session: fp32 and fp16 (NHWC I/O), fp32 with
    NCHW I/O, and full-INT8 by PT2E and by ai-edge-quantizer, calibrated on 32 bundled Fashion-MNIST images."""
    pytest.importorskip("litert_torch", reason="the tflite extra is not installed: pip install 'edgekd[tflite]'")
    import numpy as np
    import torch

    from edgekd.backends.tflite.lower import convert_tflite
    from edgekd.models import zoo
    from tests.helpers import TINY_STUDENT, fashion_subset

    folder = tmp_path_factory.mktemp("tflite")
    torch.manual_seed(0)
    model = zoo.build("resnet", TINY_STUDENT).eval()
    x, y = fashion_subset(96)
    calib, held_out = x[:32], x[32:]
    files = {
        "fp32": convert_tflite(model, held_out[:1], folder / "fp32.tflite", "fp32", "nhwc"),
        "fp32_nchw": convert_tflite(model, held_out[:1], folder / "fp32_nchw.tflite", "fp32", "nchw"),
        "fp16": convert_tflite(model, held_out[:1], folder / "fp16.tflite", "fp16", "nhwc"),
        "int8": convert_tflite(model, held_out[:1], folder / "int8.tflite", "int8", "nhwc", calib),
        "int8_aeq": convert_tflite(
            model, held_out[:1], folder / "int8_aeq.tflite", "int8", "nhwc", calib, int8_method="ai-edge-quantizer"
        ),
    }
    return {"model": model, "x": held_out, "y": y[32:], "calib": calib, "files": files, "np": np}
