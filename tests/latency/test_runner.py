from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.core.errors import ProfilingError
from edgekd.latency import measure as latency
from edgekd.latency import runner

RUNNER = Path(runner.__file__)
FIELDS = {
    "path", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "throughput", "init_ms",
    "model_bytes", "rss_mb_delta", "peak_rss_mb", "threads", "batch", "runs", "runtime", "runtime_version", "providers",
}  # fmt: skip


def _conv_model(path: Path, layers: int, channels: int, size: int, batch: int | str = "N") -> Path:
    """A stack of 3x3 convolutions: compute grows with layers * channels^2 * size^2."""
    rng = np.random.default_rng(0)
    nodes, inits, name = [], [], "input"
    for i in range(layers):
        w = (rng.standard_normal((channels, channels, 3, 3)) * 0.05).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [name, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        name = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "convs",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, timeout=120)


def test_runner_json_and_heavier_model_is_slower(tmp_path: Path) -> None:
    light = _conv_model(tmp_path / "light.onnx", layers=1, channels=4, size=8)  # ~1 kMAC
    heavy = _conv_model(tmp_path / "heavy.onnx", layers=4, channels=32, size=48)  # ~85 MMAC
    proc = _run(str(light), str(heavy), "--warmup", "2", "--runs", "20", "--rounds", "4", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["config"] == {"warmup": 2, "runs": 20, "rounds": 4, "threads": 1, "batch": 1, "clock": "wall"}
    models = doc["models"]
    assert [m["path"] for m in models] == [str(light), str(heavy)]
    for m in models:
        assert m.keys() >= FIELDS
        assert m["min_ms"] <= m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"] <= m["max_ms"]
        assert m["runs"] == 20 and m["threads"] == 1 and m["providers"] == ["CPUExecutionProvider"]
        assert m["throughput"] == pytest.approx(1000.0 / m["mean_ms"])
        assert m["model_bytes"] == Path(m["path"]).stat().st_size and m["init_ms"] > 0
        assert m["rss_mb_delta"] is not None and 0 <= m["peak_rss_mb"] <= doc["peak_rss_mb"]  # own <= process
        assert m["throughput_derived"] is True and m["p99_samples"] == 1  # 20 runs: p99 is one run
    assert doc["peak_rss_mb"] > 10  # the runner process as a whole (runtime and both models)
    assert all(len(v) == 3 for v in (doc["host"]["load_average_before"], doc["host"]["load_average_after"]))
    assert models[0]["rss_mb_delta"] < 5  # one-time runtime set-up (and numpy.random) not charged to the first
    assert models[1]["p50_ms"] > 5 * models[0]["p50_ms"]
    progress = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert progress[-1] == {"progress": 10, "total": 10}  # 2 models x (load + 4 rounds)
    assert [p["progress"] for p in progress] == list(range(1, 11))


def test_rounds_interleave_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[str] = []

    def load_fake(path: str, threads: int, batch: int) -> runner.Loaded:
        name = Path(path).stem
        return runner.Loaded(run=lambda: calls.append(name), info={"runtime": "fake", "runtime_version": "0"})

    monkeypatch.setitem(runner.RUNTIMES, ".fake", load_fake)  # a new runtime needs only a dict entry
    for name in ("a", "b"):
        (tmp_path / f"{name}.fake").write_bytes(b"x")
    doc = runner.measure([str(tmp_path / "a.fake"), str(tmp_path / "b.fake")], 1, 6, 3, 1, 1)
    # warm-ups, then 3 rounds of 2 timed runs each, every switch to a model re-warmed by min(warmup, REWARM) run
    assert calls == ["a", "b"] + ["a", "a", "a", "b", "b", "b"] * 3
    assert [m["runs"] for m in doc["models"]] == [6, 6]


def test_batch_and_shape_rules(tmp_path: Path) -> None:
    dynamic = _conv_model(tmp_path / "dyn.onnx", layers=1, channels=4, size=8)
    proc = _run(str(dynamic), "--warmup", "0", "--runs", "2", "--rounds", "1", "--batch", "3")
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)["models"][0]
    assert m["batch"] == 3 and m["throughput"] == pytest.approx(3000.0 / m["mean_ms"])

    fixed = _conv_model(tmp_path / "fixed.onnx", layers=1, channels=4, size=8, batch=1)
    proc = _run(str(fixed), "--batch", "4", "--runs", "2")
    assert proc.returncode == 2 and "fixed batch of 1" in proc.stderr and "fixed.onnx" in proc.stderr


def test_bad_suffix_exits_2_with_message(tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"\x00")
    proc = _run(str(model))
    assert proc.returncode == 2
    assert "model.pt" in proc.stderr and "'.pt'" in proc.stderr and ".onnx" in proc.stderr and ".tflite" in proc.stderr
    assert proc.stdout == ""


def test_latency_measure_streams_progress(tmp_path: Path) -> None:
    a = _conv_model(tmp_path / "a.onnx", layers=1, channels=4, size=8)
    b = _conv_model(tmp_path / "b.onnx", layers=2, channels=8, size=16)
    seen: list[tuple[int, int]] = []
    stats = latency.measure([a, b], threads=1, warmup=1, runs=4, rounds=2, on_progress=lambda d, t: seen.append((d, t)))
    assert [s.path for s in stats] == [str(a), str(b)]
    assert seen[-1] == (6, 6) and len(seen) == 6
    assert stats[0].measured and stats[0].where.startswith("host (") and "1 threads" in stats[0].where
    assert "onnxruntime" in stats[0].where and stats[0].runs == 4


def test_latency_measure_failure_raises_profiling_error(tmp_path: Path) -> None:
    spatial = tmp_path / "spatial.onnx"
    _conv_model(spatial, layers=1, channels=4, size=8)
    proto = onnx.load(str(spatial))
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"  # dynamic height cannot be measured
    onnx.save(proto, str(spatial))
    with pytest.raises(ProfilingError) as info:
        latency.measure([spatial], runs=2, rounds=1, warmup=0)
    assert "spatial.onnx" in info.value.message and "dynamic dimension 2" in info.value.message
    assert "exit code 2" in info.value.message


def test_tflite_files_are_measured_in_litert_side_by_side(tiny_tflite: dict) -> None:
    files = tiny_tflite["files"]
    stats = latency.measure([files["fp32"], files["int8"]], threads=1, warmup=2, runs=6, rounds=2)
    assert [s.runtime for s in stats] == ["litert", "litert"] and all(s.p50_ms > 0 for s in stats)
    assert stats[0].providers == ["xnnpack"] and "litert" in stats[0].where and stats[1].runs == 6
    builtin = latency.measure([files["int8"]], threads=1, warmup=1, runs=3, rounds=1, tflite_delegate="none")
    assert builtin[0].providers == ["builtin"]


def test_litert_label_is_the_kernels_that_ran_not_the_flag(tmp_path: Path) -> None:
    from tests.tflite_files import fc_file

    ok = fc_file(tmp_path / "ok.tflite", int8=True)
    # a channel with a near-zero weight scale (a dead channel): XNNPACK declines the layer without an error
    dead = fc_file(tmp_path / "dead.tflite", int8=True, weight_scales=(0.01, 1e-38))
    stats = latency.measure([ok, dead], threads=1, warmup=1, runs=3, rounds=1)
    assert [s.providers for s in stats] == [["xnnpack"], ["builtin"]]
    assert stats[0].where.endswith("(xnnpack))") and stats[1].where.endswith("(builtin))")
    (none,) = latency.measure([ok], threads=1, warmup=1, runs=3, rounds=1, tflite_delegate="none")
    assert none.providers == ["builtin"]


def test_thread_clock_needs_one_thread_and_times_cpu(tmp_path: Path) -> None:
    model = _conv_model(tmp_path / "m.onnx", layers=2, channels=16, size=24)
    proc = _run(str(model), "--warmup", "2", "--runs", "20", "--rounds", "2", "--threads", "1", "--clock", "thread")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["config"]["clock"] == "thread" and doc["models"][0]["p50_ms"] > 0
    bad = _run(str(model), "--threads", "2", "--clock", "thread")
    assert bad.returncode == 2 and "use it with --threads 1" in bad.stderr


def test_peak_memory_is_the_runner_own_not_its_parents(tmp_path: Path) -> None:
    """ru_maxrss carries a parent's peak into a forked child; the runner reads its own high-water mark."""
    model = _conv_model(tmp_path / "m.onnx", layers=1, channels=4, size=8)
    code = (
        "import json, subprocess, sys\n"
        "big = bytearray(600 * 2**20)  # a parent that has touched 600 MB\n"
        "big[:: 4096] = b'x' * len(big[:: 4096])\n"
        f"out = subprocess.run([sys.executable, {str(runner.__file__)!r}, {str(model)!r}, '--runs', '5'],\n"
        "                     capture_output=True, text=True, check=True).stdout\n"
        "print(json.loads(out)['peak_rss_mb'])\n"
    )
    peak = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 5 < peak < 400, peak


def test_per_layer_profile_that_cannot_open_leaves_no_temp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    model = _conv_model(tmp_path / "m.onnx", layers=1, channels=4, size=8)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where mkdtemp puts the profiler's folder
    loaded = runner.load_onnx(str(model), 1, 1)
    assert loaded.per_layer is not None and len(loaded.per_layer(2, 1)) == 1  # a profile when the file is whole
    assert not list(scratch.iterdir())
    model.write_bytes(b"not an onnx model")  # the profiling session opens the file again: now it cannot
    with pytest.raises(Exception, match=r"(?i)protobuf|invalid|load"):
        loaded.per_layer(2, 1)
    assert not list(scratch.iterdir()), "the profiler's temp folder is removed when its session fails to open"
