"""edgekd profile --build-predictor / --predict, and targets that ask for predicted latency without a predictor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgekd
from edgekd.cli import main
from edgekd.core.errors import ProfilingError
from edgekd.latency.predictor import calibrate
from tests.helpers import tiny_config, write_config


def test_build_predictor_then_predict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(calibrate, "MAX_MACS", 3e6)  # small calibration models keep the test fast
    target = tmp_path / "host.yaml"
    target.write_text(
        "name: host1\nbackends: [onnx]\nprecisions: [fp32]\nruntime: {name: onnxruntime, threads: 1}\n"
        "profile: {warmup: 2, runs: 10, rounds: 2}\n"
    )
    rc = main(["profile", "--build-predictor", "--target", str(target), "--models", "6", "--repeats", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    path = tmp_path / "host.predictor.json"  # beside the target file
    assert out["path"] == str(path) and path.is_file()
    assert out["device"]["threads"] == 1 and out["fit"]["models"] + out["fit"]["excluded_unstable"] == 6
    model = calibrate.export_spec(calibrate.calibration_specs(1, seed=9)[0], tmp_path / "m.onnx")
    assert main(["profile", str(model), "--target", str(target), "--predict", "--json"]) == 0
    lat = json.loads(capsys.readouterr().out)
    assert lat["source"] == "predicted" and lat["p50_ms"] > 0 and "host.predictor.json" in lat["where"]


def test_predict_without_a_predictor_names_the_build_command(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    model = calibrate.export_spec(calibrate.calibration_specs(1, seed=9, max_macs=3e6)[0], tmp_path / "m.onnx")
    target = tmp_path / "t.yaml"
    target.write_text("name: t1\nbackends: [onnx]\nprecisions: [fp32]\n")
    assert main(["profile", str(model), "--target", str(target), "--predict"]) == 2
    err = capsys.readouterr().err
    assert "has no onnx-fp32 latency predictor" in err and "edgekd profile --build-predictor --target t1" in err


def test_target_that_asks_for_a_predictor_it_lacks(tmp_path: Path) -> None:
    target = tmp_path / "board.yaml"
    target.write_text("name: board\nbackends: [onnx]\nprecisions: [fp32]\nlatency: predictor\n")
    cfg = tiny_config(tmp_path, passes=[{"search": {"population": 2, "iterations": 0, "batches": 1}}])
    del cfg["student"]
    pattern = r"latency: predictor but has no onnx-fp32 predictor file .*board\.predictor\.json"
    with pytest.raises(ProfilingError, match=pattern):
        edgekd.compile(write_config(tmp_path, cfg), target=target, out=tmp_path / "runs", quiet=True)
