"""One compile per target produces every artifact the target names, each parity-checked and runnable here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekd.backends.tensorrt import lower as trt
from edgekd.backends.tensorrt import runtime as trt_runtime
from edgekd.cli import main
from edgekd.core.artifacts import sha256_file
from tests.helpers import tiny_config, write_config


def _compile_without_profile(tmp_path: Path, target: str, lower: dict) -> Path:
    cfg = tiny_config(tmp_path)
    cfg["passes"] = [
        {"distill": {"epochs": 1, "batch_size": 64}},
        {"quantize": {"precision": "int8"}},
        {"lower": {"parity": {"samples": 32, "min_top1": 80.0, "min_cosine": 0.9}, **lower}},
    ]  # no profile pass: the targets' SSH devices are not reachable from a test
    code = main(
        ["compile", str(write_config(tmp_path, cfg)), "--target", target, "--out", str(tmp_path / "runs"), "-q"]
    )
    assert code == 0
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.name != ".cache"]
    return run


def ort_metadata(path: Path) -> dict[str, str]:
    import onnxruntime as ort

    return dict(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map)


def _manifest_matches_files(run: Path) -> dict:
    manifest = json.loads((run / "manifest.json").read_text())
    for name, art in manifest["artifacts"].items():
        assert sha256_file(run / art["path"]) == art["sha256"], name
    return json.loads((run / "result.json").read_text())


def test_raspberry_pi_compile_writes_tflite_that_load_and_run_in_litert(tmp_path: Path, capsys) -> None:
    pytest.importorskip("litert_torch", reason="the tflite extra is not installed")
    from edgekd.backends.tflite.runtime import LiteRTModel

    run = _compile_without_profile(tmp_path, "raspberry-pi-4", {})
    result = _manifest_matches_files(run)
    arts = result["artifacts"]
    assert {"tflite_fp32", "tflite_int8", "onnx", "onnx_int8"} <= arts.keys()
    for name in ("tflite_fp32", "tflite_int8"):
        a = arts[name]
        assert a["kind"] == "tflite" and a["parity"]["passed"] and a["accuracy"] is not None
        assert a["io_layout"] == "nhwc" and "LiteRT" in a["accuracy_where"]
        m = LiteRTModel(run / a["path"], threads=1)
        assert m.input_shape == (1, 28, 28, 1)
        assert np.isfinite(m.predict(np.zeros((2, 1, 28, 28), np.float32))).all()
    assert arts["tflite_fp32"]["parity"]["max_abs_diff"] <= 1e-4
    # every model file ships with the preprocessing it was compiled for: a sidecar for .tflite, inside the ONNX
    pre = result["data"]["preprocessing"]
    assert pre["mean"] == result["data"]["normalize"]["mean"] and pre["input"]["shape"] == [1, 28, 28]
    assert pre["formula"] == "x[c] = (pixel[c] / 255 - mean[c]) / std[c]"
    for name in ("tflite_fp32", "tflite_int8"):
        side = json.loads((run / (arts[name]["path"] + ".preprocessing.json")).read_text())
        assert side["mean"] == pre["mean"] and side["std"] == pre["std"]
        assert side["model_sha256"] == arts[name]["sha256"] and f"{name}_preprocessing" in arts
    for name in ("onnx", "onnx_int8"):
        meta = ort_metadata(run / arts[name]["path"])
        assert json.loads(meta["edgekd.preprocessing"]) == pre, name
    assert (
        arts["tflite_int8"]["graph"]["input_type"] == "INT8" and arts["tflite_int8"]["graph"]["float_operators"] == {}
    )
    capsys.readouterr()
    assert main(["profile", str(run / "student.int8.tflite"), "--target", "x86-cpu", "--runs", "5", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["runtime"] == "litert" and stats["p50_ms"] > 0 and stats["providers"] == ["xnnpack"]


def test_jetson_compile_writes_tensorrt_ready_qdq_and_the_trtexec_commands(tmp_path: Path) -> None:
    run = _compile_without_profile(tmp_path, "jetson-orin-nano", {"tensorrt": {"sparsity": True}})
    result = _manifest_matches_files(run)
    arts = result["artifacts"]
    qdq = arts["onnx_int8_trt"]
    assert qdq["backend"] == "tensorrt" and qdq["parity"]["passed"] and qdq["precision"] == "int8"
    check = trt.check_tensorrt_onnx(run / qdq["path"])  # the file the device builds from passes every check
    assert check.quantize_nodes > 0
    assert json.loads(ort_metadata(run / qdq["path"])["edgekd.preprocessing"])["std"] == [0.353]
    script = (run / "build_engines.sh").read_text()
    assert (run / "build_engines.sh").stat().st_mode & 0o111
    assert "trtexec --onnx=student.int8.trt.onnx --saveEngine=student.int8.engine --int8 --fp16" in script
    assert "trtexec --onnx=student.onnx --saveEngine=student.fp16.engine --fp16" in script
    assert "--timingCacheFile=timing.cache" in script
    # sparsity was asked for, but this student's weights are dense: the flag follows the weights (see
    # tests/models/test_sparsity_2_4.py for a 2:4 student, where it is emitted)
    assert "--sparsity=enable" not in script
    assert any("no layer of the student has 2:4 sparse weights" in n for n in result["notes"])
    assert "--memPoolSize=workspace:1024M" in script and "--iterations=500" in script
    if not trt_runtime.tensorrt_status()[0]:
        assert any("TensorRT engine for jetson-orin-nano not built on this machine" in n for n in result["notes"])
        assert not list(run.glob("*.engine"))
    report = (run / "report.md").read_text()
    assert "## TensorRT" in report and "--saveEngine=student.int8.engine" in report
