"""A small onnxruntime wrapper: one session, first output out; one input, or a text model's named token inputs
fed from one packed (N, F, L) array (see :mod:`edgekd.models.text`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.errors import ExportError
from edgekd.core.optional import require

_PIP = "pip install onnxruntime"
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


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
        inputs = self.session.get_inputs()
        first_in = inputs[0]
        self.input_name: str = first_in.name
        self.input_shape: list[int | str | None] = list(first_in.shape)
        self.output_name: str = self.session.get_outputs()[0].name
        #: token inputs (a text model): their names in packing order, and their types
        self.token_inputs = [i.name for i in inputs] if first_in.type in _INT_TYPES else []
        self._types = {i.name: _INT_TYPES.get(i.type, np.float32) for i in inputs}

    @property
    def fixed_batch(self) -> int | None:
        """The batch size baked into the model, or None when the batch dimension is dynamic."""
        first = self.input_shape[0] if self.input_shape else None
        return first if isinstance(first, int) and first > 0 else None

    def feeds(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The session's inputs for one batch: the array itself, or a packed token batch split by input (the
        columns no sample uses cut off: the sequence length is dynamic)."""
        if not self.token_inputs:
            return {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        names = self.token_inputs
        if x.ndim != 3 or x.shape[1] != len(names):
            raise ExportError(
                f"{self.path} takes token inputs {', '.join(names)}: packed samples of shape [N, {len(names)}, "
                f"length], got {list(x.shape)}",
                fix="give text data tokenized for this model (data.source: text)",
            )
        if "attention_mask" in names:
            used = np.flatnonzero(x[:, names.index("attention_mask")].any(0))
            if len(used):
                x = x[:, :, : used[-1] + 1]
        return {n: np.ascontiguousarray(x[:, i], dtype=self._types[n]) for i, n in enumerate(names)}

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one batch exactly as given and return the first output."""
        return np.asarray(self.session.run([self.output_name], self.feeds(x))[0])

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Run any number of samples, in chunks the model accepts (its fixed batch, else ``batch_size``)."""
        x = np.ascontiguousarray(x, dtype=np.int64 if self.token_inputs else np.float32)
        if len(x) == 0:
            raise ValueError(f"predict on {self.path} got no samples")
        step = self.fixed_batch or max(1, batch_size)
        outputs = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            if self.fixed_batch is not None and len(chunk) < step:  # pad the last chunk to the baked-in batch
                pad = np.zeros((step - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
                outputs.append(self.run(np.concatenate([chunk, pad]))[: len(chunk)])
            else:
                outputs.append(self.run(chunk))
        return np.concatenate(outputs)
