"""Tiny ``.tflite`` files written by hand (LiteRT's flatbuffer schema, no converter): one FULLY_CONNECTED layer
(4 inputs, 2 outputs), in float or full INT8 with chosen quantization scales, or as a custom op. They load in
the real LiteRT interpreter in milliseconds, so a test can give the runtime exactly the file it is about."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fc_file(
    path: Path,
    *,
    int8: bool = False,
    weight_scales: tuple[float, float] = (0.01, 0.01),
    input_scale: float = 0.01,
    output_scale: float = 0.01,
    custom_op: str | None = None,
    op_version: int = 1,
) -> Path:
    """Write ``y = W x + b`` (x: 1x4, W: 2x4 of ones) to ``path``. ``int8``: INT8 tensors with per-channel weight
    scales ``weight_scales`` (the bias scale follows: input scale x weight scale). ``custom_op``: the operator is
    the custom op of that name instead of the builtin. ``op_version``: the builtin's version in the file."""
    from ai_edge_litert import schema_py_generated as s
    from ai_edge_litert.tools import flatbuffer_utils

    def tensor(name: str, shape: list[int], kind: int, buf: int, scales: list[float] | None = None) -> object:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, kind, buf
        if scales is not None:
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint, q.quantizedDimension = list(scales), [0] * len(scales), 0
            t.quantization = q
        return t

    def buffer(data: bytes | None = None) -> object:
        b = s.BufferT()
        b.data = None if data is None else list(data)
        return b

    code = s.OperatorCodeT()
    builtin = s.BuiltinOperator.CUSTOM if custom_op else s.BuiltinOperator.FULLY_CONNECTED
    code.builtinCode = code.deprecatedBuiltinCode = builtin
    code.customCode, code.version = custom_op, op_version
    if int8:
        weights, bias = np.ones((2, 4), np.int8).tobytes(), np.zeros(2, np.int32).tobytes()
        i8, i32 = s.TensorType.INT8, s.TensorType.INT32
        tensors = [
            tensor("x", [1, 4], i8, 3, [input_scale]),
            tensor("w", [2, 4], i8, 1, list(weight_scales)),
            tensor("b", [2], i32, 2, [input_scale * w for w in weight_scales]),
            tensor("y", [1, 2], i8, 4, [output_scale]),
        ]
    else:
        weights, bias = np.ones((2, 4), np.float32).tobytes(), np.zeros(2, np.float32).tobytes()
        f32 = s.TensorType.FLOAT32
        tensors = [tensor("x", [1, 4], f32, 3), tensor("w", [2, 4], f32, 1), tensor("b", [2], f32, 2)]
        tensors.append(tensor("y", [1, 2], f32, 4))
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    if not custom_op:
        op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.FullyConnectedOptions, s.FullyConnectedOptionsT()
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators, graph.name = tensors, [0], [3], [op], "main"
    model = s.ModelT()
    model.version, model.description, model.operatorCodes, model.subgraphs = 3, "edgekd test", [code], [graph]
    model.buffers = [buffer(), buffer(weights), buffer(bias), buffer(), buffer()]
    path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    return path
