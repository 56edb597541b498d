"""The one backend table: for each backend, its runtime, the files it runs and how to open them.

Code outside ``backends/`` asks this table (``BACKENDS``, :func:`backend_of`, :func:`open_model`) instead of
branching on a backend's name. Every model opened here has ``predict(x)``: NCHW float32 samples in, float32
outputs out.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgekd.core.errors import ExportError
from edgekd.data.stream import chunks


class Predictor(Protocol):
    def predict(self, x: np.ndarray, batch_size: int = ...) -> np.ndarray: ...


@dataclass(frozen=True)
class QuantScheme:
    """What a runtime's INT8 file computes, for quantization-aware training to simulate (stages/quantize/qat.py).

    Weights are symmetric int8 on [-127, 127] (per output channel or per tensor); activations are quantized at
    every input and output of the operators the runtime's quantizer handles (Relu/Clip merged into their
    producer), on ``[act_qmin, act_qmax]``, symmetric or with a zero point; biases are int32 at scale
    ``input_scale * weight_scale`` when ``bias_int32``. ``calibration`` is how the deployed file's ranges are
    found; ``differences`` lists where the simulation is known to differ from the runtime (for the report).
    """

    runtime: str
    act_qmin: int
    act_qmax: int
    act_symmetric: bool
    per_channel: bool
    bias_int32: bool
    calibration: str  # minmax | entropy | percentile | histogram
    #: "module:function" (per-sample values of each tensor, calibration) -> {tensor: (lo, hi)}: how the runtime's
    #: calibration turns the values into a range, for anything but min/max (None: min/max over the samples)
    range_finder: str | None = None
    #: pooling and reshaping outputs are requantized with their input's scale and zero point (TFLite's Mean,
    #: AveragePool, MaxPool, Reshape) instead of a range of their own
    pools_share_input_range: bool = False
    differences: tuple[str, ...] = ()


@dataclass(frozen=True)
class Backend:
    name: str  # as targets name it: onnx | tflite | tensorrt
    runtime: str  # the runtime's name in reports
    suffixes: tuple[str, ...]  # files of this backend
    model: str  # "module:Class" opened as Class(path, threads=..., delegate=...) (imported on first use)
    lower: str  # "module:function" writing this backend's artifacts from the student (see lower/stage.py)
    runtime_id: str  # as targets name the runtime: onnxruntime | litert | tensorrt
    local: bool = True  # runs on this host when its package is installed
    delegates: bool = False  # its runtime takes a delegate (LiteRT: xnnpack | none)
    #: "module:function" measuring files on an SSH device in its own way; None: the standalone latency runner
    device_measure: str | None = None
    #: "module:function" (lower config, target) raising when this backend cannot be used here (before any pass runs)
    check: str | None = None
    #: "module:function" (the lower pass's summary in result.json) -> this backend's report sections
    report: str | None = None
    #: fp16 runs fast on its hardware (GPUs); CPUs emulate it
    fast_fp16: bool = False
    #: its kernels use 2:4 structured sparsity (TensorRT's sparse tensor cores)
    sparse_2_4: bool = False
    #: "module:function" (target quantization settings, calibration method) -> the QuantScheme of its INT8 files
    int8_scheme: str = "edgekd.backends.onnx.quantize:qdq_scheme"

    def open(self, path: Path, threads: int | None, delegate: str) -> Predictor:
        module, _, cls = self.model.partition(":")
        kwargs: dict[str, Any] = {"threads": threads} | ({"delegate": delegate} if self.delegates else {})
        return getattr(importlib.import_module(module), cls)(path, **kwargs)

    def lower_fn(self) -> Any:
        return load_function(self.lower)


def int8_scheme(backend: str, quantization: Any, method: str) -> QuantScheme:
    """The INT8 scheme of ``backend`` under a target's ``quantization:`` settings and ``calibration.method``."""
    return load_function(BACKENDS[backend].int8_scheme)(quantization, method)  # type: ignore[no-any-return]


def load_function(name: str) -> Any:
    """The object named ``module:attribute`` (imported on first use)."""
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


BACKENDS: dict[str, Backend] = {
    "onnx": Backend(
        "onnx",
        "ONNX Runtime",
        (".onnx",),
        "edgekd.backends.onnx.runtime:OrtModel",
        "edgekd.backends.onnx.lower:lower",
        "onnxruntime",
    ),
    "tflite": Backend(
        "tflite",
        "LiteRT",
        (".tflite",),
        "edgekd.backends.tflite.runtime:LiteRTModel",
        "edgekd.backends.tflite.lower:lower",
        "litert",
        delegates=True,
        check="edgekd.backends.tflite.lower:check_available",
        report="edgekd.backends.tflite.lower:report_sections",
        int8_scheme="edgekd.backends.tflite.lower:pt2e_scheme",
    ),
    "tensorrt": Backend(
        "tensorrt",
        "TensorRT",
        (".engine",),
        "edgekd.backends.tensorrt.runtime:TrtModel",
        "edgekd.backends.tensorrt.lower:lower",
        "tensorrt",
        local=False,
        device_measure="edgekd.backends.tensorrt.runtime:measure_with_trtexec",
        report="edgekd.backends.tensorrt.lower:report_sections",
        fast_fp16=True,
        sparse_2_4=True,
    ),
}

#: artifact kinds that are deployable models (the rest are reports, sidecars, scripts)
MODEL_KINDS = ("onnx", "tflite", "engine")
#: suffixes this host opens with a local runtime
SUFFIXES = tuple(s for b in BACKENDS.values() if b.local for s in b.suffixes)


#: the libraries whose versions decide what a compile computes (exports, quantization, runtimes)
LIBRARIES = (
    "torch", "numpy", "onnx", "onnxscript", "onnxruntime", "torch-pruning", "litert-torch", "ai-edge-litert",
    "ai-edge-quantizer", "tensorrt",
)  # fmt: skip


def library_versions() -> dict[str, str | None]:
    """The installed version of each of :data:`LIBRARIES` (None: not installed), read without importing them."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def backend_for_runtime(runtime: str) -> Backend:
    """The backend whose runtime a target names (``runtime.name``)."""
    return next(b for b in BACKENDS.values() if b.runtime_id == runtime)


def remote_name(i: int, path: Path) -> str:
    """A safe file name on a device for the ``i``-th model copied there."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", path.name)
    return f"{i:02d}-{safe}"


def backend_of(path: str | os.PathLike[str]) -> Backend | None:
    suffix = Path(path).suffix
    return next((b for b in BACKENDS.values() if suffix in b.suffixes), None)


def runs_here(path: str | os.PathLike[str]) -> bool:
    """True for a model file this host runs in a local runtime (``.onnx``, ``.tflite``)."""
    b = backend_of(path)
    return b is not None and b.local


def open_model(path: str | os.PathLike[str], threads: int | None = None, delegate: str = "xnnpack") -> Predictor:
    """A runtime session over ``path``; ``delegate`` applies to LiteRT (``xnnpack`` or ``none``)."""
    p = Path(path)
    b = backend_of(p)
    if b is None or not b.local:
        raise ExportError(
            f"{p}: no local runtime for '{p.suffix or '(none)'}' files (known: {', '.join(SUFFIXES)})",
            fix="give an .onnx or .tflite file; TensorRT engines run where TensorRT is installed",
        )
    return b.open(p, threads, delegate)


def runtime_name(path: str | os.PathLike[str]) -> str:
    b = backend_of(path)
    return b.runtime if b else "?"


def accuracy(
    model: str | os.PathLike[str] | Predictor,
    x: Any,
    y: Any,
    threads: int | None = None,
    delegate: str = "xnnpack",
) -> float:
    """Top-1 accuracy (percent) of a deployed artifact (a path, opened in its own runtime, or an open model) on
    normalised inputs ``x`` (NCHW tensor or array) with labels ``y``."""
    runner = open_model(model, threads, delegate) if isinstance(model, str | os.PathLike) else model
    ys = y.numpy() if hasattr(y, "numpy") else np.asarray(y)
    return float((predict_in_chunks(runner, x).argmax(1) == ys).mean() * 100)


def predict_in_chunks(runner: Predictor, x: Any, size: int = 512) -> np.ndarray:
    """``runner``'s logits on ``x`` (tensor, array, or streamed images), ``size`` samples at a time, so a streamed
    split is decoded a chunk at a time."""
    outs = [runner.predict(c.numpy() if hasattr(c, "numpy") else np.asarray(c)) for c in chunks(x, size)]
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
