"""Target profiles: names, aliases, paths, and honest reporting for targets we cannot reach."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgekd
from edgekd.config.target import list_targets, load_target
from edgekd.core.errors import ConfigError, TargetError


def test_shipped_targets_validate() -> None:
    names = {t.name: t for t in list_targets()}
    assert {"x86-cpu", "jetson-orin-nano", "raspberry-pi-4"} <= set(names)
    assert names["x86-cpu"].quantization.activation_type == "uint8"  # measured faster on x86 ORT
    assert names["jetson-orin-nano"].quantization.activation_type == "int8"  # TensorRT wants symmetric int8
    assert names["raspberry-pi-4"].runtime.threads == 4


@pytest.mark.parametrize(
    ("alias", "name"), [("jetson", "jetson-orin-nano"), ("rpi4", "raspberry-pi-4"), ("x86", "x86-cpu")]
)
def test_aliases(alias: str, name: str) -> None:
    assert load_target(alias).name == name


def test_target_from_path_and_bad_file(tmp_path: Path) -> None:
    good = tmp_path / "mine.yaml"
    good.write_text("name: mine\nbackends: [onnx]\nprecisions: [fp32]\n")
    assert load_target(str(good)).name == "mine"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbackends: [coreml]\nprecisions: [fp32]\n")
    with pytest.raises(ConfigError, match=r"backends\[0\]: 'coreml' is not one of onnx, tensorrt, tflite"):
        load_target(str(bad))
    with pytest.raises(TargetError, match="target file not found"):
        load_target(str(tmp_path / "none.yaml"))


def test_unknown_target_lists_known_ones() -> None:
    with pytest.raises(TargetError) as info:
        load_target("raspberry-pi-5")
    assert "did you mean 'raspberry-pi-4'" in str(info.value) and "x86-cpu" in str(info.value)


def test_unreachable_target_still_compiles_and_says_what_was_not_measured(tiny: Path, tmp_path: Path) -> None:
    res = edgekd.compile(tiny, target="jetson", out=tmp_path / "runs", quiet=True)
    r = json.loads(res.result_path.read_text())
    assert r["target"]["name"] == "jetson-orin-nano" and r["target"]["measured_on_target"] is False
    assert res.artifacts["onnx_int8"].is_file()
    # TensorRT wants symmetric int8 activations: the QDQ model's activation zero points are int8
    assert r["artifacts"]["onnx_int8"]["quantization"]["activations"] == "int8"
    for art in r["artifacts"].values():
        if "latency" in art:
            assert art["latency"]["on_target"] is False and "not on jetson-orin-nano" in art["latency"]["where"]
    assert any("jetson-orin-nano" in n for n in r["notes"])
    report = res.report_path.read_text()
    assert "not on jetson-orin-nano" in report and "## Not measured" in report
