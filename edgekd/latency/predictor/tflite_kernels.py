"""Kernel detection for LiteRT (TFLite) files: the operators a TFLite runtime executes, typed and featured with the
same keys as the ONNX kernels of :mod:`edgekd.latency.predictor.kernels`, so one fitting and prediction code serves
both formats.

A TFLite file is already fused by its converter: ``CONV_2D`` carries its folded batch norm, bias and activation, a
residual ``ADD`` its activation. Each operator is one kernel: ``CONV_2D`` is ``conv1x1`` / ``conv3x3`` / ... /
``convkxk`` (``gconv`` when its weights hold fewer input channels than its input), ``DEPTHWISE_CONV_2D`` is
``dwconv``, ``TRANSPOSE_CONV`` is ``deconv``, ``FULLY_CONNECTED`` / ``BATCH_MATMUL`` are ``gemm``, windowed pools
are ``pool``, ``MEAN`` and whole-input pools are ``gpool``, arithmetic and activations are ``eltwise``,
``RESHAPE``-like operators are ``reshape`` (no data moved), ``TRANSPOSE`` is ``transpose`` and ``PAD`` is ``pad``
(both move their input and output), ``QUANTIZE`` / ``DEQUANTIZE`` are ``quant``, and anything else ``other``.
Convolutions get the channel-alignment suffix, or with ``channel_block`` > 1 the padded work, exactly as in ONNX.

Layout: activations are NHWC (channels last), convolution weights OHWI ``[cout, kh, kw, cin]``, depthwise weights
``[1, kh, kw, cout]``. Weight bytes are those of an operator's constant inputs (weights and bias).

Quantized files: a kernel whose first data input is INT8/UINT8/INT16 gets a ``q`` prefix (``qconv3x3.a16``;
``reshape`` keeps none: a view costs nothing in any precision);
``QUANTIZE`` / ``DEQUANTIZE`` of activations are real work in TFLite (no QLinear folding), so each one is a
``quant`` kernel, while a ``DEQUANTIZE`` of a constant (fp16 weights) is folded at load time and is none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.backends.tflite.runtime import operator_names, tensor_type_names
from edgekd.core.errors import ProfilingError
from edgekd.latency.predictor.kernels import Graph, Kernel, _numel, conv_key

CONVS = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"}
DENSE = {"FULLY_CONNECTED", "BATCH_MATMUL"}
POOLS = {"MAX_POOL_2D", "AVERAGE_POOL_2D"}
GPOOLS = {"MEAN"}
ACTIVATIONS = {
    "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LOGISTIC", "HARD_SWISH", "TANH", "GELU", "LEAKY_RELU",
    "ELU", "PRELU",
}  # fmt: skip
ELTWISE = {"ADD", "MUL", "SUB", "DIV", "MAXIMUM", "MINIMUM", "ADD_N", *ACTIVATIONS}
SHAPE_ONLY = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}
PADS = {"PAD", "PADV2", "MIRROR_PAD"}
QUANT = {"QUANTIZE", "DEQUANTIZE"}
QUANTIZED_TYPES = {"INT8", "UINT8", "INT16"}
_TYPE_BYTES = {
    "FLOAT32": 4, "FLOAT16": 2, "BFLOAT16": 2, "FLOAT64": 8, "INT64": 8, "UINT64": 8, "INT32": 4, "UINT32": 4,
    "INT16": 2, "UINT16": 2, "INT8": 1, "UINT8": 1, "BOOL": 1, "INT4": 0.5, "UINT4": 0.5,
}  # fmt: skip


def _load(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """(schema module, Model) of a ``.tflite`` file; ProfilingError when it cannot be read as one."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as exc:
        raise ProfilingError(
            f"{path}: reading a TFLite file needs ai-edge-litert ({exc})", fix="pip install 'edgekd[tflite]'"
        ) from exc
    try:
        buf = Path(path).read_bytes()
        if buf[4:8] != b"TFL3":
            raise ValueError("no TFL3 flatbuffer identifier")
        model = schema.Model.GetRootAsModel(buf, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraph")
    except Exception as exc:
        raise ProfilingError(
            f"{path}: cannot read as a TFLite model ({exc})", fix="give a .tflite file written by a LiteRT converter"
        ) from exc
    return schema, model


@dataclass
class _Tensors:
    """The tensors of a subgraph: dims (batch fixed), type names, and which are constants."""

    shapes: dict[int, list[int]]
    types: dict[int, str]
    consts: set[int]

    def nbytes(self, i: int) -> float:
        return _numel(self.shapes[i]) * _TYPE_BYTES.get(self.types[i], 4) if i >= 0 else 0.0


def detect_tflite(path: str | os.PathLike[str], batch: int = 1, channel_block: int = 1) -> Graph:
    """The kernels of the ``.tflite`` file at ``path`` (its first subgraph), in operator order, with a dynamic
    batch taken as ``batch``; with ``channel_block`` > 1, convolutions count the work of channels padded to that
    block (the module docstring of :mod:`~edgekd.latency.predictor.kernels`)."""
    if channel_block < 1:
        raise ValueError(f"channel_block must be >= 1, got {channel_block}")
    schema, model = _load(path)
    g = model.Subgraphs(0)
    type_names = tensor_type_names(schema)
    names = operator_names(schema, model)
    tensors = _Tensors({}, {}, set())
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        tensors.shapes[i] = _shape(t, batch)
        tensors.types[i] = type_names.get(t.Type(), "?")
        buf = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
        if buf is not None and (buf.DataLength() > 0 or buf.Size() > 0):  # inline data, or stored after the model
            tensors.consts.add(i)
    kernels: list[Kernel] = []
    for idx in range(g.OperatorsLength()):
        op = g.Operators(idx)
        name = names[op.OpcodeIndex()]
        ins = [int(op.Inputs(j)) for j in range(op.InputsLength())]
        outs = [int(op.Outputs(j)) for j in range(op.OutputsLength())]
        data = [i for i in ins if i >= 0 and i not in tensors.consts]
        if not data and (name == "DEQUANTIZE" or name in SHAPE_ONLY):
            tensors.consts.update(outs)  # folded when the interpreter is built: its output is one more constant
            continue
        out_shape = tensors.shapes[outs[0]] if outs else []
        moved = sum(tensors.nbytes(i) for i in [*data, *outs])
        q = "q" if data and tensors.types[data[0]] in QUANTIZED_TYPES else ""
        node = [f"{name}#{idx}"]
        wbytes = 0.0
        if name in CONVS | DENSE:
            t_type, macs, wbytes = _dense_features(name, op, schema, ins, outs[0], tensors, channel_block)
        elif name in QUANT:
            t_type, macs, q = "quant", 0.0, ""
        elif name in POOLS | GPOOLS:
            t_type, macs = _pool_features(name, op, schema, tensors.shapes[data[0]] if data else [], out_shape)
        elif name in ELTWISE:
            t_type, macs = "eltwise", _numel(out_shape)
        elif name in SHAPE_ONLY:  # a view of its input: no data moved, whatever the precision
            t_type, macs, moved, q = "reshape", 0.0, 0.0, ""
        elif name == "TRANSPOSE":
            t_type, macs = "transpose", 0.0
        elif name in PADS:
            t_type, macs = "pad", 0.0
        else:
            t_type, macs = "other", _numel(out_shape)
        kernels.append(Kernel(q + t_type, node, macs, moved + wbytes, out_shape, wbytes))
    return Graph(kernels, sum(tensors.nbytes(int(g.Inputs(j))) for j in range(g.InputsLength())))


def _shape(tensor: Any, batch: int) -> list[int]:
    """A tensor's dims; a dynamic first dim (-1 in its shape signature, or 0) is ``batch``."""
    dims = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
    sig = [int(d) for d in tensor.ShapeSignatureAsNumpy()] if tensor.ShapeSignatureLength() else []
    if dims and ((sig and sig[0] < 0) or dims[0] <= 0):
        dims[0] = batch
    return dims


def _options(op: Any, cls: Any) -> Any:
    """The builtin options table of ``op`` read as ``cls`` (e.g. ``schema.Pool2DOptions``), or None."""
    table = op.BuiltinOptions()
    if table is None:
        return None
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _pool_features(name: str, op: Any, schema: Any, x: list[int], y: list[int]) -> tuple[str, float]:
    """(type key, operations) of a pooling operator: a windowed pool (``pool``) reads its window for every output
    element; ``MEAN``, or a pool whose window is its whole (NHWC) input, is a global pool (``gpool``) reading
    every input element once."""
    if name in POOLS:
        opts = _options(op, schema.Pool2DOptions)
        window = opts.FilterHeight() * opts.FilterWidth() if opts is not None else 1
        if len(x) == 4 and len(y) == 4 and y[1] == y[2] == 1 and window == x[1] * x[2]:
            return "gpool", _numel(x)
        return "pool", _numel(y) * window
    return "gpool", _numel(x)


def _dense_features(
    name: str, op: Any, schema: Any, ins: list[int], out: int, tensors: _Tensors, channel_block: int = 1
) -> tuple[str, float, float]:
    """(type key, MACs, weight bytes) of a convolution or dense operator, keyed like the ONNX detector's; the
    weight bytes are its constant inputs' (weights and bias), the convolution weights padded like the MACs."""
    shapes = tensors.shapes
    weights = [i for i in ins if i in tensors.consts and not (name == "TRANSPOSE_CONV" and i == ins[0])]
    wbytes = sum(tensors.nbytes(i) for i in weights)
    y = shapes[out]
    if name in DENSE:
        a = shapes[ins[0]]
        kdim = a[-1] if a else 0
        if name == "FULLY_CONNECTED" and len(ins) > 1 and len(shapes[ins[1]]) == 2:
            kdim = shapes[ins[1]][1]  # weights [units, k]: the operator may flatten its input
        elif name == "BATCH_MATMUL" and len(a) > 1:
            opts = _options(op, schema.BatchMatMulOptions)
            kdim = a[-2] if opts is not None and opts.AdjX() else a[-1]
        return "gemm", float(_numel(y) * kdim), float(wbytes)
    transpose = name == "TRANSPOSE_CONV"  # inputs: output shape, weights, data[, bias]
    x, w = shapes[ins[2] if transpose else ins[0]], shapes[ins[1]]  # w: OHWI, depthwise [1, kh, kw, cout]
    kh, kw = (w[1], w[2]) if len(w) == 4 else (1, 1)
    cin, cout = (x[-1] if x else 0), (y[-1] if y else 0)
    if name == "DEPTHWISE_CONV_2D":
        group, macs = cin, _numel(y) * kh * kw
    elif transpose:
        group, macs = 1, _numel(x) * cout * kh * kw
    else:
        cin_w = w[3] if len(w) == 4 else cin
        group, macs = max(cin // max(cin_w, 1), 1), _numel(y) * cin_w * kh * kw
    key, macs_scale, w_scale = conv_key(kh if kh == kw else 0, cin, cout, group, transpose, channel_block)
    w_only = tensors.nbytes(ins[1]) if ins[1] in weights else 0.0  # the bias is not padded
    return key, float(round(macs * macs_scale)), float(round(w_only * w_scale + wbytes - w_only))


def kernel_table_tflite(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The kernels of a ``.tflite`` file as JSON-ready rows (for reports and debugging)."""
    return [k.to_dict() for k in detect_tflite(Path(path)).kernels]
