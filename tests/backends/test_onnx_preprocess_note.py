"""A failed onnxruntime quant_pre_process is said in the report notes, not only logged: the quantizer goes on with
the graph as exported, and the report must say its INT8 model was made without the pre-processing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.backends.onnx.quantize import quantize_static_onnx
from edgekd.core.progress import notes_to, run_note


def _inverse_model(path: Path) -> Path:
    """MatMul -> com.microsoft Inverse -> MatMul: onnxruntime runs it, but the symbolic shape inference of
    quant_pre_process has no rule for Inverse and fails ('Incomplete symbolic shape inference')."""
    w = numpy_helper.from_array((np.eye(4) + 0.1).astype(np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Inverse", ["h"], ["inv"], domain="com.microsoft"),
        helper.make_node("MatMul", ["inv", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "inverse",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_failed_pre_processing_becomes_a_note_of_the_running_compile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a failing quant_pre_process leaves sym_shape_infer_temp.onnx in the working folder
    src = _inverse_model(tmp_path / "inverse.onnx")
    calib = np.eye(4, dtype=np.float32) + np.random.default_rng(0).random((16, 4, 4), dtype=np.float32) * 0.1
    notes: list[str] = []
    with notes_to(notes.append):
        out = quantize_static_onnx(src, tmp_path / "inverse.int8.onnx", calib, batch_size=4)
    (note,) = notes
    assert note.startswith("quantize: onnxruntime's quant_pre_process failed on inverse.onnx (")
    assert "Incomplete symbolic shape inference" in note and "quantized from the graph as exported" in note
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # the INT8 file is still made
    assert session.run(None, {"x": calib[:1]})[0].shape == (1, 4, 4)


def test_outside_a_compile_there_is_no_note_to_add() -> None:
    assert run_note("nobody listens") is False
    seen: list[str] = []
    with notes_to(seen.append):
        assert run_note("said") is True
    assert seen == ["said"] and run_note("after the block") is False
