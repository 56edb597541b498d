"""What a latency predictor predicts: the kind of model file (format and precision) and the kernels in one.

A predictor is fitted on one kind of file timed in one runtime: fp32 or INT8 ONNX in ONNX Runtime (or built into
TensorRT engines on a Jetson), fp32 or full-INT8 ``.tflite`` in LiteRT. A kernel table of one kind says nothing
about another (an INT8 convolution is a different kernel from an fp32 one, XNNPACK fuses differently from ONNX
Runtime), so every predictor file records its kind and only predicts files of that kind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.core.errors import ProfilingError
from edgekd.latency.predictor.kernels import QDQ, Graph, detect

ARTIFACTS = ("onnx", "tflite")
PRECISIONS = ("fp32", "int8")
_INT8_TYPES = ("INT8", "UINT8", "INT16")


@dataclass(frozen=True)
class PredictorKind:
    """The files a predictor predicts: ``artifact`` (onnx | tflite) at ``precision`` (fp32 | int8)."""

    artifact: str = "onnx"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.artifact not in ARTIFACTS:
            raise ValueError(f"artifact must be one of {ARTIFACTS}, got {self.artifact!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def key(self) -> str:
        """``onnx-fp32``, ``onnx-int8``, ``tflite-fp32``, ``tflite-int8``."""
        return f"{self.artifact}-{self.precision}"

    @property
    def describe(self) -> str:
        if self.artifact == "onnx":
            return "fp32 ONNX" if self.precision == "fp32" else "INT8 (QDQ) ONNX"
        return "fp32 .tflite" if self.precision == "fp32" else "full-INT8 .tflite"


def target_artifact(target: Any) -> str:
    """The format a target ships: its first backend's file format (the backend table's suffix) when a predictor
    reads it, else ``onnx`` (TensorRT, which builds its engines on the device from the ONNX file)."""
    from edgekd.backends.base import BACKENDS

    fmt = BACKENDS[target.backends[0]].suffixes[0].lstrip(".")
    return fmt if fmt in ARTIFACTS else "onnx"


def shipped_kind(target: Any, precision: str | None) -> PredictorKind:
    """The kind of file ``target`` ships at ``precision`` (int8 stays int8; fp32, fp16 and None are predicted as
    fp32: fp16 files keep fp32 arithmetic on CPU runtimes and no fp16 predictor is calibrated)."""
    return PredictorKind(target_artifact(target), "int8" if precision == "int8" else "fp32")


def _onnx_precision(path: Path) -> str:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ProfilingError(f"{path}: cannot read as ONNX ({exc})", fix="give an .onnx model file") from exc
    return "int8" if any(n.op_type in QDQ for n in proto.graph.node) else "fp32"


def _tflite_precision(path: Path) -> str:
    from edgekd.backends.tflite.runtime import op_summary

    try:
        summary = op_summary(path)
    except Exception as exc:
        raise ProfilingError(f"{path}: cannot read as a .tflite file ({exc})", fix="give a .tflite model file") from exc
    ops = summary["by_output_type"]
    computing = [k for k in ops if not k.startswith(("QUANTIZE:", "DEQUANTIZE:"))]
    return "int8" if any(k.rpartition(":")[2] in _INT8_TYPES for k in computing) else "fp32"


def file_kind(path: str | os.PathLike[str]) -> PredictorKind:
    """The kind of a model file: its format by suffix, INT8 when its graph computes in integers (QDQ nodes in
    ONNX; integer operator outputs in ``.tflite``), else fp32."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return PredictorKind("onnx", _onnx_precision(p))
    if suffix == ".tflite":
        return PredictorKind("tflite", _tflite_precision(p))
    raise ProfilingError(
        f"{p}: latency predictors read .onnx and .tflite files, not {suffix or 'a file without a suffix'}",
        fix="predict student.onnx, student.int8.onnx or student.<precision>.tflite from a run folder",
    )


def detect_file(path: str | os.PathLike[str], batch: int = 1, channel_block: int = 1) -> Graph:
    """The kernels of an ONNX or ``.tflite`` file (by suffix) as the predictor sees them."""
    if Path(path).suffix.lower() == ".tflite":
        from edgekd.latency.predictor.tflite_kernels import detect_tflite

        return detect_tflite(path, batch, channel_block)
    return detect(path, batch, channel_block)
