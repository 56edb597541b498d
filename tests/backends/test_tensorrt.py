"""TensorRT: the QDQ ONNX a device builds from is checked here, and the trtexec command is exact; engines are built
only where TensorRT imports and a GPU exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from edgekd.backends.onnx.lower import export_onnx
from edgekd.backends.onnx.quantize import quantize_static_onnx
from edgekd.backends.onnx.runtime import OrtModel
from edgekd.backends.tensorrt import lower as trt
from edgekd.backends.tensorrt import runtime as trt_runtime
from edgekd.core.errors import ExportError
from edgekd.models import zoo
from tests.helpers import TINY_STUDENT

TRT_OK, TRT_WHY = trt_runtime.tensorrt_status()


@pytest.fixture(scope="module")
def qdq(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("trt")
    torch.manual_seed(0)
    model = zoo.build("resnet", TINY_STUDENT).eval()
    x = torch.randn(16, 1, 28, 28)
    fp32 = export_onnx(model, x[:1], folder / "fp32.onnx")
    calib = x.numpy()
    return {
        "model": model,
        "x": x,
        "fp32": fp32,
        "int8": quantize_static_onnx(fp32, folder / "int8.onnx", calib, "int8", quantize_bias=False),
        "uint8": quantize_static_onnx(fp32, folder / "uint8.onnx", calib, "uint8", quantize_bias=False),
        "int32_bias": quantize_static_onnx(fp32, folder / "bias.onnx", calib, "int8", quantize_bias=True),
        "folder": folder,
    }


def test_int8_command_builds_saves_and_times_the_engine() -> None:
    argv = trt.trtexec_command(
        "student.int8.trt.onnx", "student.int8.engine", "int8", "input", (1, 3, 224, 224), {"workspace_mb": 1024}
    )
    assert argv[:3] == ["trtexec", "--onnx=student.int8.trt.onnx", "--saveEngine=student.int8.engine"]
    assert "--int8" in argv and "--fp16" in argv and "--memPoolSize=workspace:1024M" in argv
    assert "--timingCacheFile=timing.cache" in argv and "--duration=0" in argv and "--iterations=500" in argv
    assert not any(a.startswith("--minShapes") for a in argv)  # a static model takes no shapes


def test_fp16_dynamic_batch_sparsity_and_custom_binary() -> None:
    argv = trt.trtexec_command(
        "student.onnx", "e.engine", "fp16", "input", (4, 1, 28, 28), {"trtexec": "/usr/src/tensorrt/bin/trtexec"},
        dynamic_batch=True, max_batch=16, sparsity=True, runs=50,
    )  # fmt: skip
    assert argv[0] == "/usr/src/tensorrt/bin/trtexec" and "--fp16" in argv and "--int8" not in argv
    assert "--minShapes=input:1x1x28x28" in argv and "--optShapes=input:4x1x28x28" in argv
    assert "--maxShapes=input:16x1x28x28" in argv and "--sparsity=enable" in argv and "--iterations=50" in argv


def test_symmetric_int8_qdq_passes_every_check(qdq: dict) -> None:
    check = trt.check_tensorrt_onnx(qdq["int8"])
    assert check.quantize_nodes > 0 and check.dequantize_nodes >= check.quantize_nodes
    assert any("all symmetric int8" in c for c in check.checks) and check.opset == 17


def test_uint8_activations_are_refused_naming_node_and_fix(qdq: dict) -> None:
    with pytest.raises(ExportError) as info:
        trt.check_tensorrt_onnx(qdq["uint8"])
    msg = str(info.value)
    assert "uint8" in msg and "symmetric int8" in msg and "QuantizeLinear node '" in msg
    assert "quantization.activation_type: int8" in msg


def test_int32_bias_is_refused_with_the_quantize_bias_fix(qdq: dict) -> None:
    with pytest.raises(ExportError) as info:
        trt.check_tensorrt_onnx(qdq["int32_bias"])
    assert "int32" in str(info.value) and "quantize_bias: false" in str(info.value)


def test_operator_tensorrt_lacks_is_named_with_layer_and_options(tmp_path: Path) -> None:
    node = helper.make_node("Unique", ["x"], ["y"], name="/layer2/dedup/Unique")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    path = tmp_path / "unique.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ExportError) as info:
        trt.check_tensorrt_onnx(path)
    msg = str(info.value)
    assert "operator 'Unique'" in msg and "layer 'layer2.dedup'" in msg and "fp16" in msg and "another backend" in msg


def test_opset_newer_than_the_target_parses_is_refused(tmp_path: Path) -> None:
    path = export_onnx(zoo.build("resnet", TINY_STUDENT).eval(), torch.randn(1, 1, 28, 28), tmp_path / "m.onnx", 18)
    with pytest.raises(ExportError) as info:
        trt.check_tensorrt_onnx(path, max_opset=17)
    assert "opset 18" in str(info.value) and "lower.opset: 17" in str(info.value)
    assert trt.check_tensorrt_onnx(path, max_opset=20).opset == 18


@pytest.mark.skipif(trt.polygraphy_binary() is None, reason="polygraphy is not installed (pip install 'edgekd[trt]')")
def test_polygraphy_sanitized_qdq_runs_in_onnxruntime_like_the_original(qdq: dict) -> None:
    out = qdq["folder"] / "int8.trt.onnx"
    ran = trt.polygraphy_sanitize(qdq["int8"], out)
    assert ran[0].startswith("polygraphy surgeon sanitize") and ran[1].startswith("polygraphy run")
    x = qdq["x"].numpy()
    np.testing.assert_allclose(OrtModel(out, 1).predict(x), OrtModel(qdq["int8"], 1).predict(x), atol=1e-5)
    trt.check_tensorrt_onnx(out)


def test_build_script_is_runnable_shell(tmp_path: Path) -> None:
    script = trt.build_script({"int8": ["trtexec", "--onnx=a b.onnx"]}, "engines NOT built here: no GPU").decode()
    assert script.startswith("#!/bin/sh") and "trtexec '--onnx=a b.onnx'" in script and "no GPU" in script


@pytest.mark.skipif(not TRT_OK, reason=f"TensorRT engine path needs tensorrt and a GPU: {TRT_WHY}")
def test_engine_builds_and_matches_onnx(qdq: dict, tmp_path: Path) -> None:  # pragma: no cover - needs a GPU
    for precision, src in (("fp16", qdq["fp32"]), ("int8", qdq["int8"])):
        engine = tmp_path / f"{precision}.engine"
        info = trt.build_engine(src, engine, precision, tmp_path / "timing.cache")
        assert engine.stat().st_size > 0 and (tmp_path / "timing.cache").is_file() and info["build_s"] > 0
        model = trt_runtime.TrtModel(engine)
        x = qdq["x"][:4].numpy()
        got, ref = model.predict(x), OrtModel(qdq["fp32"], 1).predict(x)
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.75
        assert np.median(model.latency_ms(x[:1], warmup=5, runs=20)) > 0


def test_fp32_engines_are_built_without_tf32() -> None:
    fp32 = trt.trtexec_command("student.onnx", "s.engine", "fp32", "input", (1, 1, 28, 28), {})
    int8 = trt.trtexec_command("student.int8.trt.onnx", "s.engine", "int8", "input", (1, 1, 28, 28), {})
    assert "--noTF32" in fp32 and "--fp16" not in fp32 and "--noTF32" not in int8
