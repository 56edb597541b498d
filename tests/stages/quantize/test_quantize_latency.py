"""quantize judges INT8 against fp32 in the target's own runtime: on this host only when the host is the target;
for a device it cannot reach and cannot predict, the check is reported as not made (before, host ONNX Runtime
timings advised shipping fp32 for a TensorRT device, and per_layer chose fp32 layers by x86 timings)."""

from __future__ import annotations

from pathlib import Path

import edgekd
from edgekd.api import CompileResult
from tests.helpers import tiny_config, write_config

QUANTIZE = {"quantize": {"precision": "int8", "fallback": {"latency": "per_layer", "accuracy": False}}}


def _compile(tmp_path: Path, target: str) -> CompileResult:
    cfg = tiny_config(tmp_path, passes=[QUANTIZE, {"report": {}}])
    return edgekd.compile(write_config(tmp_path, cfg), target=target, out=tmp_path / "runs", quiet=True)


def test_a_device_target_without_device_or_predictor_is_not_checked(tmp_path: Path) -> None:
    res = _compile(tmp_path, "jetson-orin-nano")
    check = res.metrics["quantize"]["latency_check"]
    assert check["checked"] is False and "jetson-orin-nano runs tensorrt on its device" in check["why"]
    assert "fp32_ms" not in check and "int8_slower" not in check
    notes = res.notes
    assert any("INT8 vs fp32 latency not checked" in n for n in notes)
    assert any("per-layer latency fallback not run" in n for n in notes)
    assert not any("ship the fp32" in n for n in notes)
    layers = res.metrics["quantize"]["layers"]
    assert all(x["latency_gain"] is None for x in layers)  # no layer timed on this host for that device
    assert "INT8 vs fp32 latency: not checked" in res.report_path.read_text()


def test_the_host_target_is_measured_in_its_runtime(tmp_path: Path) -> None:
    res = _compile(tmp_path, "x86-cpu")
    check = res.metrics["quantize"]["latency_check"]
    assert check["checked"] is True and check["where"] == "ONNX Runtime on this host, the target"
    assert check["fp32_ms"] > 0 and check["int8_ms"] > 0
    layers = res.metrics["quantize"]["layers"]
    assert all(x["latency_gain"] is not None for x in layers if x["precision"] == "int8" or x["reason"] == "latency")
    assert "INT8 vs fp32 latency:" in res.report_path.read_text()


def test_a_litert_target_on_this_host_is_not_called_an_unreached_device(tmp_path: Path) -> None:
    """Before: a local LiteRT target (this host) got "runs litert on its device, which was not reached"."""
    import platform

    (tmp_path / "host-litert.yaml").write_text(
        f"name: host-litert\ncpu_arch: {platform.machine()}\nbackends: [tflite]\nprecisions: [int8, fp32]\n"
        "runtime: {name: litert, threads: 1}\nquantization: {activation_type: int8, weight_type: int8}\n"
        "device: {kind: local}\n"
    )
    res = _compile(tmp_path, str(tmp_path / "host-litert.yaml"))
    check = res.metrics["quantize"]["latency_check"]
    assert check["checked"] is False
    assert "runs litert on this host" in check["why"] and "not reached" not in check["why"]
    assert "timed against fp32 by the profile pass" in check["why"]
