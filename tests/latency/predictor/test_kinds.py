"""Predictors per kind of file (fp32 / INT8 ONNX in ONNX Runtime, fp32 / INT8 .tflite in LiteRT): each is
calibrated on real files of its kind measured on this host, predicts its own kind only, and is found by kind;
calibration never mixes device and host timings; the search times candidates as the kind it ships."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest
import yaml

import edgekd
from edgekd.cli import main
from edgekd.config.target import load_target, parse_target
from edgekd.core.errors import ConfigError, ProfilingError
from edgekd.latency.predictor import calibrate
from edgekd.latency.predictor.artifacts import ArtifactSettings
from edgekd.latency.predictor.calibrate import build_predictor, build_spec, calibration_specs, export_spec
from edgekd.latency.predictor.files import PredictorKind, file_kind
from edgekd.latency.predictor.lookup import default_path, load_for_target, predictor_path
from edgekd.latency.search_latency import candidate_latency
from tests.latency.conftest import SSHServer, free_port

ONNX_INT8 = PredictorKind("onnx", "int8")
TFLITE_FP32 = PredictorKind("tflite", "fp32")
SPEC = {"kind": "plain", "in_channels": 3, "num_classes": 10, "size": 16,
        "layers": [["conv", 16, 3, 1], ["sep", 32, 3, 2], ["conv", 24, 1, 1]]}  # fmt: skip


def _host(threads: int = 1) -> object:
    t = load_target("x86-cpu").model_copy(deep=True)
    t.runtime.threads, t.profile.warmup, t.profile.runs, t.profile.rounds = threads, 2, 10, 2
    return t


def _litert_target(folder: Path) -> Path:
    path = folder / "host-litert.yaml"
    path.write_text(
        "name: host-litert\nbackends: [tflite]\nprecisions: [int8, fp32]\n"
        "runtime: {name: litert, threads: 1, options: {delegate: xnnpack, io_layout: nhwc}}\n"
        "quantization: {activation_type: int8}\nprofile: {warmup: 2, runs: 10, rounds: 2}\n"
    )
    return path


@pytest.fixture(scope="module")
def int8_predictor(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """An INT8 ONNX predictor built on this host from 8 real QDQ files, and a held-out QDQ file."""
    tmp = tmp_path_factory.mktemp("int8")
    pred = build_predictor(_host(), models=8, repeats=1, runs=10, max_macs=5e6, kind=ONNX_INT8)  # type: ignore[arg-type]
    pred.save(tmp / "x86-cpu.onnx-int8.predictor.json")
    held = export_spec(SPEC, tmp / "held", kind=ONNX_INT8, settings=ArtifactSettings())
    return pred, held


def test_file_kind_reads_the_format_and_precision(tmp_path: Path) -> None:
    fp32 = export_spec(SPEC, tmp_path / "m")
    int8 = export_spec(SPEC, tmp_path / "m", kind=ONNX_INT8)
    assert (fp32.name, int8.name) == ("m.onnx", "m.int8.onnx")
    assert file_kind(fp32).key == "onnx-fp32" and file_kind(int8).key == "onnx-int8"
    other = tmp_path / "m.pt"
    other.write_bytes(b"x")
    with pytest.raises(ProfilingError, match=r"m\.pt: latency predictors read \.onnx and \.tflite"):
        file_kind(other)


def test_int8_predictor_is_fitted_on_qdq_files_and_predicts_them(int8_predictor: tuple[object, Path]) -> None:
    pred, held = int8_predictor
    assert pred.kind == ONNX_INT8  # type: ignore[attr-defined]
    doc = pred.to_json()  # type: ignore[attr-defined]
    assert (doc["artifact"], doc["precision"], doc["runtime"]) == ("onnx", "int8", "onnxruntime")
    assert doc["device"]["calibration_files"] == {
        "kind": "onnx-int8", "activation_type": "uint8", "weight_type": "int8", "per_channel": True,
        "quantize_bias": True,
    }  # fmt: skip
    convs = [t for t in pred.types if "conv" in t]  # type: ignore[attr-defined]
    assert convs and all(t.startswith("q") for t in convs)  # the INT8 kernels, not fp32 ones
    p = pred.predict(held)  # type: ignore[attr-defined]
    assert p.p50_ms > 0 and "INT8 (QDQ) ONNX kernel table" in p.where


def test_a_predictor_refuses_files_of_another_kind(int8_predictor: tuple[object, Path], tmp_path: Path) -> None:
    pred, _ = int8_predictor
    fp32 = export_spec(SPEC, tmp_path / "f")
    with pytest.raises(ProfilingError, match=r"f\.onnx is a fp32 ONNX file; the latency predictor .* predicts "
                       r"INT8 \(QDQ\) ONNX files") as err:  # fmt: skip
        pred.predict(fp32)  # type: ignore[attr-defined]
    assert "--build-predictor --target x86-cpu --precision fp32" in (err.value.fix or "")


def test_predictors_are_found_by_kind_beside_the_target(int8_predictor: tuple[object, Path], tmp_path: Path) -> None:
    pred, held = int8_predictor
    target = tmp_path / "board.yaml"
    target.write_text("name: board\nbackends: [onnx]\nprecisions: [int8, fp32]\n")
    t = load_target(target)
    assert predictor_path(t) == tmp_path / "board.predictor.json"
    assert predictor_path(t, ONNX_INT8) == tmp_path / "board.onnx-int8.predictor.json"
    assert default_path(None, "pi", PredictorKind("tflite", "int8")) == Path("targets/pi.tflite-int8.predictor.json")
    assert load_for_target(t, ONNX_INT8) is None
    pred.save(tmp_path / "board.onnx-int8.predictor.json")  # type: ignore[attr-defined]
    assert load_for_target(t, ONNX_INT8).kind == ONNX_INT8  # type: ignore[union-attr]
    assert load_for_target(t) is None  # no fp32 predictor: the INT8 one does not stand in
    # edgekd.predict picks the predictor of the file's kind
    lat = edgekd.predict(held, target=target)
    assert lat["source"] == "predicted" and "board.onnx-int8.predictor.json" in lat["where"]
    assert (lat["predictor_kind"], lat["predictor_runtime"]) == ("onnx-int8", "onnxruntime")
    # a mapping names one file per kind; a file of the wrong kind under a key is an error naming the key
    target.write_text(
        "name: board\nbackends: [onnx]\nprecisions: [int8]\npredictor: {onnx-fp32: board.onnx-int8.predictor.json}\n"
    )
    with pytest.raises(
        ProfilingError, match=r"predictor\.onnx-fp32 is .*board\.onnx-int8\.predictor\.json, a onnx-int8"
    ):
        load_for_target(load_target(target))
    target.write_text("name: board\nbackends: [onnx]\nprecisions: [int8]\npredictor: {onnx-fp16: x.json}\n")
    with pytest.raises(ConfigError, match="predictor"):
        load_target(target)


def test_cli_builds_the_int8_predictor_and_predicts_an_int8_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(calibrate, "MAX_MACS", 3e6)
    target = tmp_path / "host.yaml"
    target.write_text(
        "name: host1\nbackends: [onnx]\nprecisions: [int8, fp32]\nruntime: {name: onnxruntime, threads: 1}\n"
        "profile: {warmup: 2, runs: 10, rounds: 2}\n"
    )
    argv = ["profile", "--build-predictor", "--target", str(target), "--precision", "int8", "--models", "6"]
    assert main([*argv, "--repeats", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "onnx-int8" and out["path"] == str(tmp_path / "host.onnx-int8.predictor.json")
    model = export_spec(calibration_specs(1, seed=9, max_macs=3e6)[0], tmp_path / "m", kind=ONNX_INT8)
    assert main(["profile", str(model), "--target", str(target), "--predict", "--json"]) == 0
    lat = json.loads(capsys.readouterr().out)
    assert lat["source"] == "predicted" and "host.onnx-int8.predictor.json" in lat["where"]
    # the fp32 file has no fp32 predictor yet: the error names the build command with its precision
    fp32 = export_spec(calibration_specs(1, seed=9, max_macs=3e6)[0], tmp_path / "m")
    assert main(["profile", str(fp32), "--target", str(target), "--predict"]) == 2
    assert "--build-predictor --target host1 --precision fp32" in capsys.readouterr().err
    fp16_only = tmp_path / "fp16.yaml"
    fp16_only.write_text("name: gpu\nbackends: [onnx]\nprecisions: [fp16]\n")
    assert main(["profile", "--build-predictor", "--target", str(fp16_only), "--precision", "int8"]) == 2
    assert "target gpu ships fp16" in capsys.readouterr().err


def test_calibration_covers_inverted_residual_networks() -> None:
    specs = calibration_specs(40, seed=0)
    mobile = [s for s in specs if s["kind"] == "mobilenet"]
    assert len(mobile) >= 6  # about 3 in 10 draws
    assert {e for s in mobile for e in s["expand"]} - {1}  # expanded blocks, not only separable convs
    for s in mobile[:3]:
        assert any(type(m).__name__ == "Conv2d" and m.groups > 1 for m in build_spec(s).modules())


def test_a_repeat_that_cannot_reach_the_device_stops_the_calibration(sshd: SSHServer, tmp_path: Path) -> None:
    raw = yaml.safe_load((Path(edgekd.__file__).parent / "bundled/targets/x86-cpu.yaml").read_text())
    raw["device"] = sshd.device()
    raw["runtime"]["threads"] = 1
    raw["profile"] = {"warmup": 2, "runs": 10, "rounds": 1, "batch": 1}
    target = parse_target(raw)
    paths = [export_spec(s, tmp_path / f"c{i}") for i, s in enumerate(calibration_specs(2, seed=3, max_macs=2e6))]

    def after_repeat(done: int, total: int) -> None:  # the device goes away after the first repeat
        target.device.port = free_port()

    with pytest.raises(ProfilingError, match=r"repeat 2 of 2 ran on the host, repeat 1 on the device") as err:
        calibrate.measure_files(target, paths, repeats=2, on_progress=after_repeat)
    assert "never mixed" in (err.value.fix or "")


def test_candidates_are_timed_as_the_kind_the_compile_ships(
    int8_predictor: tuple[object, Path], tmp_path: Path
) -> None:
    host = _host()
    lat = candidate_latency(host, "int8")  # type: ignore[arg-type]
    assert lat.source == "measured-host" and lat.kind == "onnx-int8" and "INT8 (QDQ) ONNX files" in lat.describe
    assert lat.fn is not None and lat.fn(build_spec(SPEC), (3, 16, 16)) > 0
    assert candidate_latency(host, None).kind == "onnx-fp32"  # type: ignore[arg-type]
    # a target that is not this host: its predictor of the shipped kind
    target = tmp_path / "board.yaml"
    target.write_text(
        "name: board\nbackends: [onnx]\nprecisions: [int8, fp32]\ndevice: {kind: ssh, host: board.local}\n"
    )
    pred, _ = int8_predictor
    pred.save(tmp_path / "board.onnx-int8.predictor.json")  # type: ignore[attr-defined]
    board = load_target(target)
    lat = candidate_latency(board, "int8")
    assert (
        lat.source == "predicted"
        and lat.kind == "onnx-int8"
        and lat.record()["predictor"].endswith("board.onnx-int8.predictor.json")
    )
    assert lat.fn is not None and lat.fn(build_spec(SPEC), (3, 16, 16)) > 0
    fp32 = candidate_latency(board, "fp32")  # no fp32 predictor: not measured, and says which kind is missing
    assert fp32.source == "none" and "no onnx-fp32 predictor" in fp32.describe


def test_litert_predictor_on_this_host(tmp_path: Path) -> None:
    pytest.importorskip("litert_torch")
    target = load_target(_litert_target(tmp_path))
    assert target.is_host  # LiteRT runs here: calibrated and measured on this host
    board = target.model_copy(update={"cpu_arch": "aarch64" if platform.machine() != "aarch64" else "x86_64"})
    assert not board.is_host  # a LiteRT board of another architecture described without its SSH device
    pred = build_predictor(target, models=5, repeats=1, runs=10, max_macs=2e6)
    assert pred.kind == TFLITE_FP32 and pred.device["runtime"] == "litert" and pred.device["delegate"] == "xnnpack"
    assert pred.device["kernels_ran"] == ["xnnpack"]
    assert pred.device["calibration_files"] == {"kind": "tflite-fp32", "io_layout": "nhwc"}
    path = pred.save(predictor_path(target, TFLITE_FP32))
    assert path.name == "host-litert.tflite-fp32.predictor.json"
    held = export_spec(SPEC, tmp_path / "held", kind=TFLITE_FP32, settings=ArtifactSettings.of(target))
    assert held.name == "held.fp32.tflite" and file_kind(held) == TFLITE_FP32
    lat = edgekd.predict(held, target=target)
    assert lat["p50_ms"] > 0 and "fp32 .tflite kernel table" in lat["where"]
    with pytest.raises(ProfilingError, match=r"no tflite-int8 latency predictor"):
        edgekd.predict(export_spec(SPEC, tmp_path / "q", kind=PredictorKind("tflite", "int8")), target=target)


def test_litert_int8_predictor_built_over_ssh(sshd: SSHServer, tmp_path: Path) -> None:
    """A LiteRT target reached over SSH (the sshd on 127.0.0.1, whose Python has ai-edge-litert): the full-INT8
    calibration files are copied there and timed by the device runner with the target's delegate."""
    pytest.importorskip("litert_torch")
    raw = yaml.safe_load(_litert_target(tmp_path).read_text())
    raw["device"] = sshd.device(required=True)
    raw["runtime"]["options"]["delegate"] = "none"
    target = parse_target(raw, tmp_path / "host-litert.yaml")
    assert not target.is_host
    kind = PredictorKind("tflite", "int8")
    pred = build_predictor(target, models=4, repeats=1, runs=10, max_macs=2e6, kind=kind)
    assert pred.kind == kind and pred.device["runtime"] == "litert" and pred.device["delegate"] == "none"
    assert pred.device["kernels_ran"] == ["builtin"]  # the delegate reached the device runner
    assert pred.device["where"].startswith(f"device root@127.0.0.1:{sshd.port}")
    assert all(m["p50_ms"] > 0 for m in pred.measurements)
    convs = [t for t in pred.types if "conv" in t or t.endswith("gemm")]
    assert convs and all(t.startswith("q") for t in convs)
