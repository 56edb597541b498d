"""A small onnxruntime wrapper: one session, first input in, first output out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.errors import ExportError
from edgekd.core.optional import require

_PIP = "pip install onnxruntime"


def _import_ort() -> Any:
    return require("onnxruntime", "onnxruntime is not installed, so ONNX models cannot run here", _PIP)


class OrtModel:
    """An onnxruntime CPU session over ``path`` with ``threads`` intra-op threads (None: onnxruntime's default)."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, optimize: bool = True) -> None:
        """``optimize=False`` runs the graph operator by operator as written (a QDQ file's Q/DQ nodes in float,
        no fused integer kernels): what the file specifies rather than what the CPU kernels compute."""
        ort = _import_ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"ONNX model {self.path} does not exist", fix="run the export step first")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        if not optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ExportError(
                f"onnxruntime cannot load {self.path}: {str(exc).splitlines()[0]}",
                fix="re-export the model (another lower.opset in model.yaml) or check the file is not truncated",
            ) from exc
        first_in = self.session.get_inputs()[0]
        self.input_name: str = first_in.name
        self.input_shape: list[int | str | None] = list(first_in.shape)
        self.output_name: str = self.session.get_outputs()[0].name

    @property
    def fixed_batch(self) -> int | None:
        """The batch size baked into the model, or None when the batch dimension is dynamic."""
        first = self.input_shape[0] if self.input_shape else None
        return first if isinstance(first, int) and first > 0 else None

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one batch exactly as given and return the first output."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        return np.asarray(self.session.run([self.output_name], {self.input_name: x})[0])

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Run any number of samples, in chunks the model accepts (its fixed batch, else ``batch_size``)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if len(x) == 0:
            raise ValueError(f"predict on {self.path} got no samples")
        step = self.fixed_batch or max(1, batch_size)
        outputs = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            if self.fixed_batch is not None and len(chunk) < step:  # pad the last chunk to the baked-in batch
                pad = np.zeros((step - len(chunk), *chunk.shape[1:]), dtype=np.float32)
                outputs.append(self.run(np.concatenate([chunk, pad]))[: len(chunk)])
            else:
                outputs.append(self.run(chunk))
        return np.concatenate(outputs)
