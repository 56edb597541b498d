"""Static post-training quantization of an ONNX model with onnxruntime (QDQ format).

x86 CPUs run uint8 activations with int8 weights fastest; TensorRT wants int8 activations with symmetric
ranges. Both come from ``activation_type``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.backends.base import QuantScheme
from edgekd.core.artifacts import atomic_writer
from edgekd.core.errors import DataError, ExportError
from edgekd.core.optional import require
from edgekd.core.progress import run_note

log = logging.getLogger(__name__)

ACTIVATION_TYPES = ("uint8", "int8")
WEIGHT_TYPES = ("int8", "uint8")
METHODS = ("minmax", "entropy", "percentile")
_PIP = "pip install onnxruntime"


def qdq_scheme(quantization: Any, method: str) -> QuantScheme:
    """What :func:`quantize_static_onnx` writes for a target's ``quantization:`` settings (TensorRT builds the same
    QDQ file): uint8 activations with a zero point on [0, 255], or symmetric int8 on [-127, 127] (ORT's
    symmetric range); every Conv/Gemm/MatMul/Add/Mul/pool/Flatten input and output quantized, Relu/Clip merged."""
    symmetric = quantization.activation_type == "int8"
    return QuantScheme(
        runtime="ONNX Runtime QDQ",
        act_qmin=-127 if symmetric else 0,
        act_qmax=127 if symmetric else 255,
        act_symmetric=symmetric,
        per_channel=quantization.per_channel,
        bias_int32=quantization.quantize_bias,
        calibration=method,
        range_finder=None if method == "minmax" else "edgekd.backends.onnx.quantize:histogram_ranges",
    )


def histogram_ranges(recorded: dict[str, list[np.ndarray]], method: str) -> dict[str, tuple[float, float]]:
    """The entropy / percentile thresholds :func:`quantize_static_onnx` finds (ONNX Runtime's own collector, at the
    defaults ``quantize_static`` uses) for tensors whose per-sample values are ``recorded``."""
    import contextlib
    import io

    from onnxruntime.quantization.calibrate import HistogramCollector

    symmetric, bins = {"entropy": (False, 128), "percentile": (True, 2048)}[method]
    collector = HistogramCollector(method, symmetric, bins, 128, 99.999, "same")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints progress lines
        collector.collect(recorded)
        result = collector.compute_collection_result()
    out = {}
    for name, value in result.items():
        lo, hi = value.range_value if hasattr(value, "range_value") else value[:2]
        out[name] = (float(lo), float(hi))
    return out


def _ort_quant() -> Any:
    return require("onnxruntime.quantization", "onnxruntime.quantization is not importable", _PIP)


class ArrayCalibrationReader:
    """Feeds an (N, C, H, W) float32 array to the calibrator in batches of ``batch_size`` (last batch padded)."""

    def __init__(self, input_name: str, data: np.ndarray, batch_size: int, pad_last: bool) -> None:
        self.input_name = input_name
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.batch_size = max(1, batch_size)
        self.pad_last = pad_last
        self._batches: Iterator[np.ndarray] = self._iterate()

    def _iterate(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.data), self.batch_size):
            chunk = self.data[start : start + self.batch_size]
            if self.pad_last and len(chunk) < self.batch_size:  # repeat real samples rather than zeros
                reps = self.data[np.arange(self.batch_size - len(chunk)) % len(self.data)]
                chunk = np.concatenate([chunk, reps])
            yield chunk

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        self._batches = self._iterate()


class TokenCalibrationReader(ArrayCalibrationReader):
    """Feeds packed token inputs (N, F, L) int64 (a text model's, see :mod:`edgekd.models.text`) by input name."""

    def __init__(self, names: list[str], data: np.ndarray, batch_size: int) -> None:
        self.names = names
        self.data = np.ascontiguousarray(data, dtype=np.int64)
        self.batch_size = max(1, batch_size)
        self.pad_last = False
        self._batches = self._iterate()

    def get_next(self) -> dict[str, np.ndarray] | None:  # type: ignore[override]
        batch = next(self._batches, None)
        if batch is None:
            return None
        return {n: np.ascontiguousarray(batch[:, i]) for i, n in enumerate(self.names)}


def token_input_names(path: str | os.PathLike[str]) -> list[str]:
    """The graph inputs of a text model's ONNX file (int64 token inputs, in order); empty for any other model."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if inputs and inputs[0].type.tensor_type.elem_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
        return [i.name for i in inputs]
    return []


def quantize_dynamic_onnx(
    fp32_path: str | os.PathLike[str], out_path: str | os.PathLike[str], per_channel: bool = True
) -> Path:
    """Dynamic INT8 (onnxruntime ``quantize_dynamic``): int8 weights, activations quantized at run time from each
    input's own range (no calibration) -- the usual CPU recipe for BERT-class models."""
    src, out = Path(fp32_path), Path(out_path)
    if not src.is_file():
        raise ExportError(f"fp32 model {src} does not exist", fix="run the ONNX export step before quantization")
    quantization = _ort_quant()
    with tempfile.TemporaryDirectory(prefix="edgekd-quant-") as tmpdir:
        pre = Path(tmpdir) / "preprocessed.onnx"
        model_in = pre if _preprocess(quantization, src, pre) else src
        with atomic_writer(out) as tmp:
            try:
                quantization.quantize_dynamic(
                    str(model_in), str(tmp), per_channel=per_channel, weight_type=quantization.QuantType.QInt8
                )
            except Exception as exc:
                raise ExportError(
                    f"onnxruntime dynamic quantization of {src} failed: {type(exc).__name__}: {exc}",
                    fix="try quantize.method ptq (static) or another lower.opset",
                ) from exc
            _check_loads(tmp, src)
    return out


def _model_input(path: Path) -> tuple[str, list[Any]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    first = next(i for i in model.graph.input if i.name not in inits)
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in first.type.tensor_type.shape.dim]
    return first.name, dims


def _preprocess(quantization: Any, src: Path, dst: Path) -> bool:
    """Run quant_pre_process (shape inference + graph optimisation); False if it fails, leaving ``src`` to use.
    Text models (a dynamic sequence length) skip the symbolic shape inference, which cannot resolve it."""
    try:
        quantization.quant_pre_process(str(src), str(dst), skip_symbolic_shape=bool(token_input_names(src)))
    except Exception as exc:  # an optimisation only: quantize the raw graph instead
        log.warning("quant_pre_process failed on %s (%s); quantizing the model as exported", src, exc)
        run_note(
            f"quantize: onnxruntime's quant_pre_process failed on {src.name} ({type(exc).__name__}: {exc}); the "
            "INT8 model was quantized from the graph as exported, without its shape inference and optimisation"
        )
        return False
    return dst.is_file()


def quantize_static_onnx(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration: np.ndarray,
    activation_type: str = "uint8",
    weight_type: str = "int8",
    per_channel: bool = True,
    method: str = "minmax",
    batch_size: int | None = None,
    reduce_range: bool = False,
    quantize_bias: bool = True,
    nodes_to_exclude: list[str] | None = None,
) -> Path:
    """Quantize ``fp32_path`` to QDQ int8 at ``out_path`` using ``calibration`` (N, C, H, W float32) samples.

    int8 activations are calibrated symmetrically (TensorRT); uint8 asymmetrically (x86 onnxruntime).
    ``batch_size`` defaults to the model's fixed batch, or 32 when the batch is dynamic. ``quantize_bias=False``
    keeps biases float (TensorRT builds only int8 DequantizeLinear, not ONNX Runtime's int32 biases).
    ``nodes_to_exclude`` (ONNX node names) stay in float: the per-layer fallback.
    """
    src, out = Path(fp32_path), Path(out_path)
    if activation_type not in ACTIVATION_TYPES:
        raise ValueError(f"activation_type must be one of {ACTIVATION_TYPES}, got {activation_type!r}")
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"weight_type must be one of {WEIGHT_TYPES}, got {weight_type!r}")
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    if not src.is_file():
        raise ExportError(f"fp32 model {src} does not exist", fix="run the ONNX export step before quantization")
    calib = np.asarray(calibration)
    if calib.ndim == 0 or len(calib) == 0:
        raise DataError(
            f"no calibration samples to quantize {src}",
            fix="point quantize.calibration in model.yaml at a non-empty data set (a few hundred samples)",
        )
    if not np.isfinite(calib).all():
        raise DataError(
            f"calibration data for {src} contains NaN or inf", fix="normalise/clean the calibration samples"
        )
    quantization = _ort_quant()
    input_name, dims = _model_input(src)
    tokens = token_input_names(src)
    if tokens and (calib.ndim != 3 or calib.shape[1] != len(tokens)):
        raise DataError(
            f"calibration samples of shape {tuple(calib.shape[1:])} do not fit the token inputs {tokens} of {src}",
            fix="calibrate a text model on its own tokenized data (calibration.source train or val)",
        )
    if tokens:  # a dynamic sequence length: any packed length fits
        dims = [dims[0], len(tokens), None]
    fixed_dims = [d if isinstance(d, int) and d > 0 else None for d in dims[1:]]
    if len(dims) != calib.ndim or any(d not in (None, s) for d, s in zip(fixed_dims, calib.shape[1:], strict=True)):
        raise DataError(
            f"calibration samples of shape {tuple(calib.shape[1:])} do not fit input '{input_name}' {dims} of {src}",
            fix="use calibration data preprocessed like the model's training inputs",
        )
    fixed = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    batch = fixed or batch_size or 32
    if fixed is not None and batch_size not in (None, fixed):
        log.info("%s has a fixed batch of %d; calibrating in batches of %d", src, fixed, fixed)
    qtype = {"int8": quantization.QuantType.QInt8, "uint8": quantization.QuantType.QUInt8}
    calib_method = {
        "minmax": quantization.CalibrationMethod.MinMax,
        "entropy": quantization.CalibrationMethod.Entropy,
        "percentile": quantization.CalibrationMethod.Percentile,
    }[method]
    extra = {"ActivationSymmetric": activation_type == "int8", "WeightSymmetric": True, "QuantizeBias": quantize_bias}
    reader = (
        TokenCalibrationReader(tokens, calib, batch)
        if tokens
        else ArrayCalibrationReader(input_name, calib, batch, pad_last=fixed is not None)
    )
    with tempfile.TemporaryDirectory(prefix="edgekd-quant-") as tmpdir:
        pre = Path(tmpdir) / "preprocessed.onnx"
        model_in = pre if _preprocess(quantization, src, pre) else src
        with atomic_writer(out) as tmp:
            try:
                quantization.quantize_static(
                    str(model_in),
                    str(tmp),
                    reader,
                    quant_format=quantization.QuantFormat.QDQ,
                    per_channel=per_channel,
                    reduce_range=reduce_range,
                    activation_type=qtype[activation_type],
                    weight_type=qtype[weight_type],
                    calibrate_method=calib_method,
                    extra_options=extra,
                    nodes_to_exclude=list(nodes_to_exclude or []),
                )
            except Exception as exc:
                raise ExportError(
                    f"onnxruntime static quantization of {src} failed: {type(exc).__name__}: {exc}",
                    fix="try quantize.method minmax, another lower.opset, or exclude the failing layer",
                ) from exc
            _check_loads(tmp, src)
    return out


def _check_loads(path: Path, src: Path) -> None:
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(
            f"the quantized model of {src} does not load in onnxruntime: {str(exc).splitlines()[0]}",
            fix="try activation_type uint8 or per_channel false for this target",
        ) from exc
