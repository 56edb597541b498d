"""A PyTorch model written as the file a target ships, so a predictor is calibrated on (and predicts) what runs.

``onnx-fp32``: the ONNX export; ``onnx-int8``: that export quantized to QDQ by the quantize pass's quantizer with
the target's activation/weight types, per-channel and bias settings; ``tflite-fp32`` / ``tflite-int8``: the lower
pass's LiteRT conversion (the target's I/O layout; full INT8 by the lower pass's default PT2E method). INT8 files
are calibrated on random normal samples: their ranges change what the model computes, not how long it takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.core.errors import ProfilingError
from edgekd.latency.predictor.files import PredictorKind

CALIBRATION_SAMPLES = 8


@dataclass(frozen=True)
class ArtifactSettings:
    """How a target's files are made: ONNX QDQ types and TFLite layout/method (the defaults of x86-cpu)."""

    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = True
    quantize_bias: bool = True
    layout: str = "nhwc"
    int8_method: str = "pt2e"

    @classmethod
    def of(cls, target: Any) -> ArtifactSettings:
        q = target.quantization
        return cls(
            activation_type=q.activation_type,
            weight_type=q.weight_type,
            per_channel=q.per_channel,
            quantize_bias=q.quantize_bias,
            layout=str(target.runtime.options.get("io_layout", "nhwc")),
        )

    def describe(self, kind: PredictorKind) -> dict[str, Any]:
        """What the calibration files were (for the predictor file)."""
        if kind.artifact == "onnx":
            if kind.precision == "fp32":
                return {}
            return {
                "activation_type": self.activation_type,
                "weight_type": self.weight_type,
                "per_channel": self.per_channel,
                "quantize_bias": self.quantize_bias,
            }
        out: dict[str, Any] = {"io_layout": self.layout}
        if kind.precision == "int8":
            out.update(int8_method=self.int8_method, per_channel=self.per_channel)
        return out


def write_artifact(
    model: nn.Module,
    input_shape: tuple[int, ...],
    kind: PredictorKind,
    stem: Path,
    settings: ArtifactSettings | None = None,
    seed: int = 0,
) -> Path:
    """``model`` (an image model taking ``(1, *input_shape)`` float inputs) written as ``stem`` + the kind's suffix;
    returns the path. Token (text) models are exported as fp32 ONNX only."""
    from edgekd.backends.onnx.lower import export_onnx
    from edgekd.models.text import token_inputs

    s = settings or ArtifactSettings()
    model = model.eval()
    if token_inputs(model) is not None:
        raise ProfilingError(
            f"a text model cannot be written as a {kind.describe} file for latency prediction here",
            fix="measure text candidates (the target's latency: measure) or predict with an onnx-fp32 predictor",
        )
    example = torch.zeros(1, *input_shape)
    calibration = np.random.default_rng(seed).standard_normal((CALIBRATION_SAMPLES, *input_shape)).astype(np.float32)
    if kind.artifact == "onnx":
        fp32 = export_onnx(model, example, stem.with_name(stem.name + ".onnx"))
        if kind.precision == "fp32":
            return fp32
        from edgekd.backends.onnx.quantize import quantize_static_onnx

        return quantize_static_onnx(
            fp32, stem.with_name(stem.name + ".int8.onnx"), calibration,
            activation_type=s.activation_type, weight_type=s.weight_type, per_channel=s.per_channel,
            batch_size=1, quantize_bias=s.quantize_bias,
        )  # fmt: skip
    from edgekd.backends.tflite.lower import convert_tflite

    path = stem.with_name(f"{stem.name}.{kind.precision}.tflite")
    return convert_tflite(
        model, example, path, kind.precision, layout=s.layout,
        calibration=calibration if kind.precision == "int8" else None, int8_method=s.int8_method,
        per_channel=s.per_channel,
    )  # fmt: skip
