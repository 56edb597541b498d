"""Open any deployed artifact in its own runtime, by file suffix: ``.onnx`` in ONNX Runtime, ``.tflite`` in LiteRT.

Every model returned has ``predict(x)``: NCHW float32 samples in, float32 outputs out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from edgekd.errors import ExportError


class Predictor(Protocol):
    def predict(self, x: np.ndarray, batch_size: int = ...) -> np.ndarray: ...


SUFFIXES = (".onnx", ".tflite")


def open_model(path: str | os.PathLike[str], threads: int | None = None, delegate: str = "xnnpack") -> Predictor:
    """A runtime session over ``path``; ``delegate`` applies to LiteRT (``xnnpack`` or ``none``)."""
    p = Path(path)
    if p.suffix == ".onnx":
        from edgekd.backends.onnx_runtime import OrtModel

        return OrtModel(p, threads=threads)
    if p.suffix == ".tflite":
        from edgekd.backends.litert_runtime import LiteRTModel

        return LiteRTModel(p, threads=threads, delegate=delegate)
    raise ExportError(
        f"{p}: no local runtime for '{p.suffix or '(none)'}' files (known: {', '.join(SUFFIXES)})",
        fix="give an .onnx or .tflite file; TensorRT engines run where TensorRT is installed",
    )


def runtime_name(path: str | os.PathLike[str]) -> str:
    return {".onnx": "ONNX Runtime", ".tflite": "LiteRT"}.get(Path(path).suffix, "?")
