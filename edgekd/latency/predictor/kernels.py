"""Kernel detection: the fused blocks a runtime executes for an ONNX graph, with their shape features.

A kernel is what an inference runtime runs as one unit after its usual graph fusions (nn-Meter's "kernel
detection"): ``Conv [-> BatchNormalization] [-> Add (residual)] [-> activation]`` is one convolution kernel,
``Gemm``/``MatMul [-> Add] [-> activation]`` one dense kernel, and so on. Each kernel gets a type key
(``conv3x3``, ``conv1x1``, ``dwconv``, ``gemm``, ``pool``, ``gpool``, ``eltwise``, ...) and its shape features:
multiply-accumulates and the bytes it reads and writes (inputs, output, weights, a fused residual input).

Channel blocks: runtimes with blocked layouts pad channel counts to their block (ONNX Runtime's NCHWc kernels on
an AVX-512 host run a 24-channel convolution as a 32-channel one; a first convolution with fewer input channels
than the block reads plain NCHW; input channels that are not a multiple of 4, e.g. 18 or 107, keep the generic
unblocked convolution, which for a depthwise one is many times slower). ``detect(..., channel_block=B)`` counts
the MACs and weights of that padded work and keys convolutions by algorithm (``conv3x3``, ``conv3x3.nchw`` for the
plain-input path, ``conv3x3.plain`` / ``dwconv.plain`` for the generic one) instead of by alignment;
``channel_block=1`` (no padding) keys them by alignment (``.a16``/``.a8``). The latency predictor fits each
candidate block and keeps the one its device's measurements agree with best.

Quantized (QDQ) graphs: a kernel whose data input comes from ``DequantizeLinear`` gets a ``q`` prefix
(``qconv3x3``); the Q/DQ pairs themselves are not kernels (runtimes fold them into QLinear kernels), except a
quantize or dequantize at the graph's boundary, which is a ``quant`` kernel.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, shape_inference

from edgekd.core.errors import ProfilingError

ACTIVATIONS = {"Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh", "Gelu", "Elu"}
POOLS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean"}
ELTWISE = {"Add", "Mul", "Sub", "Div", "Sum", "Max", "Min", *ACTIVATIONS}
SHAPE_ONLY = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Shape", "Gather", "Constant"}
QDQ = {"QuantizeLinear", "DequantizeLinear"}
CONV_SIZES = (1, 3, 5, 7)
ALIGN_BLOCKS = (16, 8)

_DTYPE_BYTES = {
    onnx.TensorProto.FLOAT: 4,
    onnx.TensorProto.FLOAT16: 2,
    onnx.TensorProto.DOUBLE: 8,
    onnx.TensorProto.INT8: 1,
    onnx.TensorProto.UINT8: 1,
    onnx.TensorProto.INT32: 4,
    onnx.TensorProto.INT64: 8,
}


@dataclass
class Kernel:
    """One fused block: its type key, the ONNX nodes it covers, and its shape features."""

    type: str
    nodes: list[str]
    macs: float
    bytes: float
    out_shape: list[int]
    weight_bytes: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Graph:
    """The kernels of a model and its input bytes (the per-inference copy of the feed)."""

    kernels: list[Kernel]
    input_bytes: float

    @property
    def weight_bytes(self) -> float:
        return sum(k.weight_bytes for k in self.kernels)

    def by_type(self) -> dict[str, dict[str, float]]:
        """type -> {count, macs, bytes} summed over the kernels of that type."""
        out: dict[str, dict[str, float]] = {}
        for k in self.kernels:
            row = out.setdefault(k.type, {"count": 0.0, "macs": 0.0, "bytes": 0.0})
            row["count"] += 1
            row["macs"] += k.macs
            row["bytes"] += k.bytes
        return out


def _shape_of(vi: onnx.ValueInfoProto, batch: int) -> tuple[list[int], int]:
    t = vi.type.tensor_type
    dims = []
    for i, d in enumerate(t.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        elif i == 0:
            dims.append(batch)
        else:
            dims.append(0)
    return dims, _DTYPE_BYTES.get(t.elem_type, 4)


def _load(model: str | os.PathLike[str] | onnx.ModelProto, batch: int) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        proto = model
    else:
        try:
            proto = onnx.load(str(model))
        except Exception as exc:
            raise ProfilingError(f"{model}: cannot read as ONNX ({exc})", fix="give an .onnx model file") from exc
    proto = onnx.ModelProto.FromString(proto.SerializeToString())  # a copy: the batch is fixed below
    inits = {i.name for i in proto.graph.initializer}
    for inp in proto.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        if dims and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            dims[0].ClearField("dim_param")
            dims[0].dim_value = batch
    proto = _as_ort_runs_it(proto)
    try:
        return shape_inference.infer_shapes(proto)
    except Exception as exc:
        raise ProfilingError(
            f"{getattr(model, 'name', model)}: ONNX shape inference failed ({exc})",
            fix="export the model with fixed input shapes (only the batch may be dynamic)",
        ) from exc


def _as_ort_runs_it(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The graph after ONNX Runtime's basic (graph-level, runtime-independent) optimisations: constant folding
    (shape arithmetic an exporter leaves behind, e.g. the computed pads of a same-padding convolution), Pad and
    BatchNormalization folded into convolutions, redundant nodes removed. That is the graph ONNX Runtime runs
    before it picks kernels; kernels are detected on it. Falls back to the graph as given when ONNX Runtime
    cannot load it (the runner would fail on it too, with its own message)."""
    optimised = _optimised(proto.SerializeToString())
    return proto if optimised is None else onnx.ModelProto.FromString(optimised)


@functools.lru_cache(maxsize=2)
def _optimised(serialized: bytes) -> bytes | None:
    """ONNX Runtime's basic optimisations of a serialized model (None when it cannot load it), kept for the last
    two models: a predictor detects each file once per candidate channel block, one after the other."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgekd-kernels-") as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(Path(tmp) / "basic.onnx")
        so.log_severity_level = 3
        try:
            ort.InferenceSession(serialized, so, providers=["CPUExecutionProvider"])
            return Path(so.optimized_model_filepath).read_bytes()
        except Exception:
            return None


def _numel(shape: Iterable[int]) -> float:
    return float(np.prod([max(d, 0) for d in shape])) if shape else 1.0


def detect(model: str | os.PathLike[str] | onnx.ModelProto, batch: int = 1, channel_block: int = 1) -> Graph:
    """The kernels of ``model`` (a path or a loaded ModelProto), in graph order, at ``batch``; with
    ``channel_block`` > 1, convolutions count the work of channels padded to that block (module docstring)."""
    if channel_block < 1:
        raise ValueError(f"channel_block must be >= 1, got {channel_block}")
    proto = _load(model, batch)
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    shapes: dict[str, tuple[list[int], int]] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        shapes[vi.name] = _shape_of(vi, batch)
    for name, init in inits.items():
        shapes[name] = (list(init.dims), _DTYPE_BYTES.get(init.data_type, 4))
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
        for o in n.output:
            producer[o] = n
    graph_outputs = {o.name for o in g.output}
    consts = set(inits) | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    # Identity of a constant (the legacy exporter's shared weights) is a constant too
    for n in g.node:
        if n.op_type == "Identity" and n.input and n.input[0] in consts:
            consts.update(n.output)

    def nbytes(name: str) -> float:
        shape, size = shapes.get(name, ([], 4))
        return _numel(shape) * size

    def only_consumer(name: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in graph_outputs else None

    def dequantized(name: str) -> bool:
        p = producer.get(name)
        return p is not None and p.op_type == "DequantizeLinear"

    def data_inputs(n: onnx.NodeProto) -> list[str]:
        return [i for i in n.input if i and i not in consts]

    used: set[str] = set()
    kernels: list[Kernel] = []
    # the memory layout each tensor is in: "blocked" after a 16-aligned convolution (NCHWc-style), else "plain";
    # a convolution reading a tensor in the other layout needs a reorder kernel first
    layout: dict[str, str] = {}

    def reorders(tensors: list[str], want: str, key: str) -> None:
        for t in tensors:
            if t in layout and layout[t] != want:
                kernels.append(Kernel("reorder", [f"{key}:reorder"], 0.0, 2 * nbytes(t), shapes.get(t, ([], 4))[0]))

    for n in g.node:
        key = n.name or n.output[0]
        if key in used:
            continue
        op = n.op_type
        if op == "Identity" and n.input and n.input[0] in consts:
            continue
        if op == "Constant" or (op in SHAPE_ONLY and not data_inputs(n)):
            continue
        if op in QDQ:
            # a QDQ pair between kernels is folded by the runtime; one at the graph's boundary is real work
            at_input = op == "QuantizeLinear" and n.input[0] in {i.name for i in g.input}
            at_output = op == "DequantizeLinear" and any(o in graph_outputs for o in n.output)
            if (at_input or at_output) and n.input[0] not in consts:
                kernels.append(Kernel("quant", [key], 0.0, nbytes(n.input[0]) + nbytes(n.output[0]), []))
            continue
        covered = [key]
        out = n.output[0]
        extra_bytes = 0.0
        q = "q" if n.input and dequantized(n.input[0]) else ""
        if op in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            # fuse: [BatchNormalization] [Add residual/bias] [activation] [QuantizeLinear]
            for follow in ("BatchNormalization", "Add", "ACT"):
                nxt = only_consumer(out)
                if nxt is None or (nxt.name or nxt.output[0]) in used:
                    break
                ok = nxt.op_type in ACTIVATIONS if follow == "ACT" else nxt.op_type == follow
                if not ok:
                    continue
                if follow == "Add":
                    other = [i for i in nxt.input if i != out]
                    extra_bytes += sum(nbytes(i) for i in other if i not in consts)
                covered.append(nxt.name or nxt.output[0])
                used.add(covered[-1])
                out = nxt.output[0]
            t_type, macs, wbytes = _dense_features(n, shapes, inits, out, channel_block)
            if op == "Conv" and channel_block > 1:
                # blocked convolutions write the blocked layout; the plain-input path reads NCHW; the generic one
                # reads and writes NCHW
                generic = t_type.endswith(".plain")
                reorders([n.input[0]], "plain" if generic or t_type.endswith(".nchw") else "blocked", key)
                layout[out] = "plain" if generic else "blocked"
            elif op == "Conv":
                want = "blocked" if t_type.endswith(".a16") else "plain"
                adds = [m for m in g.node if m.op_type == "Add" and (m.name or m.output[0]) in covered[1:]]
                reorders([n.input[0], *(i for m in adds for i in m.input)], want, key)
                layout[out] = want
            in_bytes = nbytes(n.input[0])
            out_shape = shapes.get(out, ([], 4))[0]
            total = in_bytes + nbytes(out) + wbytes + extra_bytes
            kernels.append(Kernel(q + t_type, covered, macs, total, out_shape, wbytes))
            continue
        ins = data_inputs(n)
        in_bytes = sum(nbytes(i) for i in ins)
        out_bytes = sum(nbytes(o) for o in n.output)
        if op in POOLS:
            t_type, macs = _pool_features(n, shapes, ins)
        elif op in ELTWISE:
            t_type, macs = "eltwise", _numel(shapes.get(n.output[0], ([], 4))[0])
        elif op in SHAPE_ONLY:
            t_type, macs = "reshape", 0.0
        else:
            t_type, macs = "other", _numel(shapes.get(n.output[0], ([], 4))[0])
        kernels.append(Kernel(q + t_type, covered, macs, in_bytes + out_bytes, shapes.get(n.output[0], ([], 4))[0]))
        if ins and ins[0] in layout and op in POOLS | ELTWISE:
            layout[n.output[0]] = layout[ins[0]]
    input_bytes = sum(nbytes(i.name) for i in g.input if i.name not in inits)
    return Graph(kernels, input_bytes)


def _pool_features(n: onnx.NodeProto, shapes: dict[str, tuple[list[int], int]], ins: list[str]) -> tuple[str, float]:
    """(type key, operations) of a pooling node: a windowed pool (``pool``) reads its window for every output
    element; a global pool or mean (``gpool``) reads every input element once."""
    if n.op_type in ("MaxPool", "AveragePool"):
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        window = _numel(attrs.get("kernel_shape", [1]))
        return "pool", _numel(shapes.get(n.output[0], ([], 4))[0]) * window
    return "gpool", _numel(shapes.get(ins[0], ([], 4))[0]) if ins else 0.0


def _pad(channels: int, block: int) -> int:
    return -(-channels // block) * block


def conv_key(
    k: int, cin: int, cout: int, group: int, transpose: bool = False, channel_block: int = 1
) -> tuple[str, float, float]:
    """(type key, MACs scale, weight scale) of a convolution with square kernel ``k`` (0: not square), shared by
    the ONNX and TFLite detectors: ``dwconv`` / ``gconv`` / ``deconv`` / ``conv{k}x{k}`` / ``convkxk``, keyed by
    alignment when ``channel_block`` is 1, else by algorithm with the channels padded to the block (scale > 1)."""
    depthwise = group > 1 and group == cin
    if depthwise:
        key = "dwconv"
    elif group > 1:
        key = "gconv"
    elif transpose:
        key = "deconv"
    else:
        key = f"conv{k}x{k}" if k in CONV_SIZES else "convkxk"
    if channel_block > 1 and not transpose and cout and cin and (group == 1 or depthwise):
        b = channel_block
        if depthwise:  # blocked when the channels are a multiple of 4, then every channel is padded
            plain, scale = cout % 4 != 0, _pad(cout, b) / cout
        elif cin < b:  # the plain-input path reads cin channels as they are
            plain, scale = False, _pad(cout, b) / cout
            key += ".nchw"
        else:  # blocked when the input channels are a multiple of 4, then both sides are padded
            plain, scale = cin % 4 != 0, (_pad(cout, b) / cout) * (_pad(cin, b) / cin)
        if plain:  # the runtime's generic (unblocked) convolution, unpadded
            key, scale = key + ".plain", 1.0
        return key, scale, scale
    return key + _alignment(cin, cout, group), 1.0, 1.0


def _dense_features(
    n: onnx.NodeProto,
    shapes: dict[str, tuple[list[int], int]],
    inits: dict[str, onnx.TensorProto],
    out: str,
    channel_block: int = 1,
) -> tuple[str, float, float]:
    """(type key, MACs, weight bytes) of a Conv/ConvTranspose/Gemm/MatMul node; convolutions with channels padded
    to ``channel_block`` when it is > 1."""
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    w_shape, w_size = shapes.get(n.input[1], ([], 4)) if len(n.input) > 1 else ([], 4)
    w_bytes = _numel(w_shape) * (w_size if n.input[1] in inits else 1) if w_shape else 0.0
    y_shape = shapes.get(n.output[0], ([], 4))[0]
    if n.op_type in ("Conv", "ConvTranspose"):
        group = int(attrs.get("group", 1))
        kernel = list(attrs.get("kernel_shape", w_shape[2:] if len(w_shape) > 2 else [1]))
        x_shape = shapes.get(n.input[0], ([], 4))[0]
        cin = x_shape[1] if len(x_shape) > 1 else (w_shape[1] * group if len(w_shape) > 1 else 1)
        per_out = (cin / group) * _numel(kernel)
        macs = _numel(y_shape) * per_out if n.op_type == "Conv" else _numel(x_shape) * _numel(w_shape[1:])
        k = kernel[0] if kernel and all(v == kernel[0] for v in kernel) else 0
        cout = y_shape[1] if len(y_shape) > 1 else 0
        key, macs_scale, w_scale = conv_key(k, cin, cout, group, n.op_type == "ConvTranspose", channel_block)
        return key, float(round(macs * macs_scale)), float(round(w_bytes * w_scale))
    # Gemm / MatMul: output elements times the reduced dimension
    a_shape = shapes.get(n.input[0], ([], 4))[0]
    kdim = a_shape[-1] if a_shape else 0
    if n.op_type == "Gemm" and attrs.get("transA", 0) and len(a_shape) == 2:
        kdim = a_shape[0]
    return "gemm", float(_numel(y_shape) * kdim), float(w_bytes)


def _alignment(cin: int, cout: int, group: int) -> str:
    """``.a16`` / ``.a8`` when the channel counts are multiples of 16 / 8 (vectorised blocked layouts such as ONNX
    Runtime's NCHWc or XNNPACK's run those much faster per MAC), else no suffix. A first layer with few input
    channels counts as aligned on its output channels alone."""
    cin_g = cin // max(group, 1) if group > 1 and group != cin else cin
    for block in ALIGN_BLOCKS:
        if cout and cout % block == 0 and (cin_g % block == 0 or cin_g < 8):
            return f".a{block}"
    return ""


def kernel_table(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The kernels of an ONNX file as JSON-ready rows (for reports and debugging)."""
    return [k.to_dict() for k in detect(Path(path)).kernels]
