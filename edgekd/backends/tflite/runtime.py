"""Run a ``.tflite`` file in the LiteRT interpreter (``ai-edge-litert``), as a device would.

Inputs are given in PyTorch's NCHW layout and float32, as for every other runtime: the model's own layout (NHWC
when converted with channel-last I/O) and its input quantization (full-integer INT8 files take int8 inputs) are
applied here, and int8 outputs are dequantized with the file's scale and zero point, so accuracy is computed on
the real test data for every artifact.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.errors import ExportError
from edgekd.core.optional import require

PIP = "pip install 'edgekd[tflite]'  (or ai-edge-litert alone to run .tflite files)"
DELEGATES = ("xnnpack", "none")


def import_interpreter() -> Any:
    return require(
        "ai_edge_litert.interpreter", "ai-edge-litert is not installed, so .tflite files cannot run here", PIP
    )


def signature_io(path: str | os.PathLike[str]) -> tuple[str, list[str]]:
    """The first signature's key and its input names (what ai-edge-quantizer's calibration data is keyed by)."""
    interp = import_interpreter().Interpreter(model_path=str(path))
    sigs = interp.get_signature_list()
    key = next(iter(sigs))
    return key, list(sigs[key]["inputs"])


class LiteRTModel:
    """A LiteRT interpreter over ``path``: ``threads`` CPU threads; ``delegate`` ``xnnpack`` (LiteRT's default CPU
    delegate) or ``none`` (built-in kernels only)."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, delegate: str = "xnnpack") -> None:
        if delegate not in DELEGATES:
            raise ValueError(f"delegate must be one of {DELEGATES}, got {delegate!r}")
        mod = import_interpreter()
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"TFLite model {self.path} does not exist", fix="run the lower pass first")
        resolver = (
            mod.OpResolverType.AUTO if delegate == "xnnpack" else mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        try:
            self.interpreter = mod.Interpreter(
                model_path=str(self.path), num_threads=threads, experimental_op_resolver_type=resolver
            )
            self.interpreter.allocate_tensors()
        except Exception as exc:
            raise ExportError(
                f"LiteRT cannot load {self.path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                fix=self.load_failure_fix(str(exc), self.path)
                or "the runtime's message does not show the cause: re-run the lower pass; check the file is not "
                "truncated and ai-edge-litert is >= 2.3",
            ) from exc
        self.delegate = delegate
        self.inputs = self.interpreter.get_input_details()
        self.input = self.inputs[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self.input["shape"])
        #: a text model's token inputs (integer, batch x sequence), in the packing order they were converted in
        self.token_inputs = (
            sorted(self.inputs, key=_argument_position)
            if np.dtype(self.input["dtype"]).kind in "iu" and len(self.input_shape) == 2
            else []
        )

    @staticmethod
    def load_failure_fix(text: str, path: str | os.PathLike[str] | None = None) -> str | None:
        """The fix for a LiteRT load failure whose message (``text``, LiteRT's own words) shows its cause; None when
        it does not. ``path``: the file, read for degenerate quantization scales when XNNPACK failed."""
        return load_failure_fix(text, path)

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.input["dtype"])

    @property
    def output_dtype(self) -> np.dtype:
        return np.dtype(self.output["dtype"])

    def layout_for(self, sample_shape: tuple[int, ...]) -> str:
        """``nchw`` or ``nhwc``: how this file wants a PyTorch (C, H, W) sample."""
        want = self.input_shape[1:]
        if tuple(sample_shape) == want:
            return "nchw"
        if len(sample_shape) == 3 and (sample_shape[1], sample_shape[2], sample_shape[0]) == want:
            return "nhwc"
        raise ExportError(
            f"{self.path}: input of shape {self.input_shape} does not take samples of shape {tuple(sample_shape)} "
            "(neither NCHW nor NHWC)",
            fix="lower the model again with the data's input_shape",
        )

    def _quantize_input(self, x: np.ndarray) -> np.ndarray:
        if self.input_dtype.kind == "f":
            return x.astype(self.input_dtype)
        scale, zero = self.input["quantization"]
        info = np.iinfo(self.input_dtype)
        q = np.round(x / scale + zero)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def _dequantize_output(self, y: np.ndarray) -> np.ndarray:
        if self.output_dtype.kind == "f":
            return y.astype(np.float32)
        scale, zero = self.output["quantization"]
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def run(self, x: np.ndarray) -> np.ndarray:
        """One inference on one sample already in the file's layout (float); returns float outputs."""
        self.interpreter.set_tensor(self.input["index"], self._quantize_input(np.ascontiguousarray(x)))
        self.interpreter.invoke()
        return self._dequantize_output(self.interpreter.get_tensor(self.output["index"]))

    @property
    def sequence_length(self) -> int | None:
        """A text model's fixed number of tokens per sample (LiteRT files have static shapes); None otherwise."""
        return int(self.token_inputs[0]["shape"][1]) if self.token_inputs else None

    def _run_tokens(self, sample: np.ndarray) -> np.ndarray:
        """One packed text sample (F, L): each row to its input, padded or checked against the file's length."""
        length = self.sequence_length
        assert length is not None
        if sample.shape[0] != len(self.token_inputs):
            raise ExportError(
                f"{self.path} takes {len(self.token_inputs)} token inputs, got packed samples of {sample.shape[0]}",
                fix="give text data tokenized for this model (data.source: text)",
            )
        if sample.shape[1] > length:
            if sample[:, length:].any():
                raise ExportError(
                    f"{self.path} takes {length} tokens per sample, got a sample of {sample.shape[1]} tokens",
                    fix=f"truncate to {length} tokens (data.max_length), or lower the model again at that length",
                )
            sample = sample[:, :length]
        elif sample.shape[1] < length:  # right padding: zero ids, zero mask
            sample = np.pad(sample, ((0, 0), (0, length - sample.shape[1])))
        for d, row in zip(self.token_inputs, sample, strict=True):
            self.interpreter.set_tensor(d["index"], row[None].astype(d["dtype"]))
        self.interpreter.invoke()
        return self._dequantize_output(self.interpreter.get_tensor(self.output["index"]))

    def predict(self, x: np.ndarray, batch_size: int = 1) -> np.ndarray:
        """Outputs for NCHW float samples ``x`` (or packed token samples (N, F, L) for a text model), run one by
        one: the file has batch 1."""
        if len(x) == 0:
            raise ValueError(f"predict on {self.path} got no samples")
        if self.token_inputs:
            return np.concatenate([self._run_tokens(np.asarray(sample)) for sample in x])
        x = np.asarray(x, dtype=np.float32)
        nhwc = self.layout_for(tuple(x.shape[1:])) == "nhwc"
        outs = []
        for sample in x:
            s = sample.transpose(1, 2, 0) if nhwc else sample
            outs.append(self.run(s[None]))
        return np.concatenate(outs)


def _argument_position(detail: dict[str, Any]) -> int:
    """A converted model's inputs are named after its arguments (``serving_default_args_1:0``): their position."""
    match = re.search(r"args_(\d+)", str(detail.get("name", "")))
    return int(match.group(1)) if match else int(detail["index"])


def tensor_type_names(schema: Any) -> dict[int, str]:
    """TFLite tensor type code -> name (``FLOAT32``, ``INT8``, ...)."""
    return {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


def operator_names(schema: Any, model: Any) -> list[str]:
    """The builtin operator name (``CONV_2D``, ...; ``CUSTOM`` for others) of each operator code of a flatbuffer
    ``model`` (``schema.Model``), by opcode index: newer files keep large codes in ``BuiltinCode``, older ones in
    ``DeprecatedBuiltinCode``."""
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        out.append(op_names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "CUSTOM"))
    return out


def op_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a ``.tflite`` graph computes in: operator counts by output type, the input/output types, and the
    operators that produce float tensors (in a full-integer file these are the ones left out of INT8)."""
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    model = schema.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    type_names = tensor_type_names(schema)
    names = operator_names(schema, model)
    counts: Counter[str] = Counter()
    float_ops: Counter[str] = Counter()
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        name = names[op.OpcodeIndex()]
        out_type = type_names.get(graph.Tensors(op.Outputs(0)).Type(), "?") if op.OutputsLength() else "?"
        counts[f"{name}:{out_type}"] += 1
        if out_type.startswith("FLOAT"):
            float_ops[name] += 1
    return {
        "operators": graph.OperatorsLength(),
        "by_output_type": dict(sorted(counts.items())),
        "float_operators": dict(sorted(float_ops.items())),
        "input_type": type_names.get(graph.Tensors(graph.Inputs(0)).Type(), "?"),
        "output_type": type_names.get(graph.Tensors(graph.Outputs(0)).Type(), "?"),
    }


#: an int8 tensor whose scale is below this spans less than ~2.6e-7 in its 256 steps: its calibrated range was
#: (almost) a single value, e.g. a constant or dead channel
TINY_SCALE = 1e-9


def degenerate_scales(path: str | os.PathLike[str]) -> list[str]:
    """The quantized tensors of a ``.tflite`` file with a degenerate scale (zero, negative, not finite, or below
    :data:`TINY_SCALE`), as ``name (channel c: scale)``; empty when none, or when the file cannot be read."""
    try:
        from ai_edge_litert import schema_py_generated as schema

        model = schema.Model.GetRootAsModel(Path(path).read_bytes(), 0)
        out = []
        for g in range(model.SubgraphsLength()):
            graph = model.Subgraphs(g)
            for i in range(graph.TensorsLength()):
                tensor = graph.Tensors(i)
                q = tensor.Quantization()
                if q is None or q.ScaleLength() == 0:
                    continue
                scales = [float(v) for v in q.ScaleAsNumpy()]
                bad = [(c, s) for c, s in enumerate(scales) if not math.isfinite(s) or s < TINY_SCALE]
                if bad:
                    c, s = bad[0]
                    where = f"channel {c}: " if len(scales) > 1 else ""
                    more = f", {len(bad) - 1} more channels" if len(bad) > 1 else ""
                    name = (tensor.Name() or b"?").decode()
                    out.append(f"{name} ({where}scale {s:.3g}{more})")
        return out
    except Exception:  # a file LiteRT could not load may not parse either: no scale to show then
        return []


def load_failure_fix(text: str, path: str | os.PathLike[str] | None = None) -> str | None:
    """The fix for a LiteRT failure to load or prepare a file, classified from LiteRT's own message; None when the
    message does not show the cause. Messages classified (ai-edge-litert 2.3):

    - ``Encountered unresolved custom op: NAME.``: the file holds a custom operator the runtime lacks;
    - ``Didn't find op for builtin opcode 'OP' version 'V'``: the file needs a newer runtime;
    - ``Node number N (TfLiteXNNPackDelegate) failed to prepare.``: XNNPACK took the nodes, then could not build
      them; with ``unsupported scale value`` in the message, or a degenerate scale in the file, the cause is the
      quantization scales.
    """
    custom = list(dict.fromkeys(re.findall(r"unresolved custom op: ([^\s]+?)\.?(?:\s|$)", text)))
    if custom:
        ops = ", ".join(custom)
        return (
            f"the file uses the custom operator {ops}, which this LiteRT runtime does not have (it registers only "
            f"built-in operators): lower the model without it (replace the layer that became {ops} by layers "
            "with built-in TFLite operators), or run the file with a LiteRT build that registers it"
        )
    old = re.search(r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'", text)
    if old:
        return (
            f"the file needs {old.group(1)} version {old.group(2)}, newer than this LiteRT runtime has: upgrade "
            "ai-edge-litert where the file runs (pip install -U ai-edge-litert), or lower with a litert-torch that "
            "matches that runtime"
        )
    if "TfLiteXNNPackDelegate) failed to prepare" in text or "in XNNPACK delegate" in text:
        scales = degenerate_scales(path) if path is not None else []
        if scales or "scale" in text:
            found = f" ({'; '.join(scales[:3])})" if scales else ""
            return (
                f"XNNPACK cannot prepare the file: its quantization scales are degenerate{found}, a tensor or channel "
                "whose calibrated range is (almost) a single value (a constant or dead channel); recalibrate with "
                "more or other samples (calibration.samples / calibration.method in model.yaml), keep that layer in "
                "fp32, or run the file with built-in kernels (runtime.options.delegate: none)"
            )
        return (
            "the XNNPACK delegate failed to prepare the file and its message does not say why (cause unknown): run "
            "it with built-in kernels (runtime.options.delegate: none) to tell a delegate problem from a bad file"
        )
    return None
