"""Latency measured on a device over SSH (a real sshd on 127.0.0.1 acting as the device), and trtexec parsing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

import edgekd
from edgekd.backends.tensorrt.runtime import parse_trtexec, parse_trtexec_profile, trace_stats, trtexec_argv
from edgekd.cli import main
from edgekd.config.target import Timing, parse_target
from edgekd.core.errors import DeviceError, ProfilingError
from edgekd.latency.device import DeviceProfiler
from tests.helpers import tiny_config, write_config
from tests.latency.conftest import SSHServer, free_port


def _conv_model(path: Path, channels: int = 8, size: int = 16, layers: int = 2) -> Path:
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        cin = 1 if i == 0 else channels
        w = numpy_helper.from_array(rng.standard_normal((channels, cin, 3, 3)).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, size, size])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["n", channels, size, size])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _target(folder: Path, device: dict, name: str = "test-device") -> Path:
    doc = {
        "name": name,
        "description": "sshd on 127.0.0.1 acting as a device",
        "backends": ["onnx"],
        "precisions": ["int8", "fp32"],
        "runtime": {"name": "onnxruntime", "threads": 1},
        "device": device,
        "profile": {"warmup": 2, "runs": 20, "rounds": 2, "batch": 1},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_device_profiler_measures_on_the_device(sshd: SSHServer, tmp_path: Path) -> None:
    small = _conv_model(tmp_path / "small model.onnx", channels=4, layers=1)
    big = _conv_model(tmp_path / "big.onnx", channels=32, size=32, layers=4)
    target = parse_target(yaml.safe_load(_target(tmp_path, sshd.device()).read_text()))
    steps: list[int] = []
    run = DeviceProfiler(target).measure(
        [small, big],
        Timing(warmup=2, runs=30, rounds=3, threads=1, batch=1, per_layer=3),
        on_progress=lambda n, t: steps.append(n),
    )
    s_small, s_big = run.stats
    assert s_small.path == str(small) and s_big.path == str(big)  # local paths, not the device's
    assert all(s.on_target and s.where.startswith(f"device root@127.0.0.1:{sshd.port} (Linux") for s in run.stats)
    assert s_big.p50_ms > 3 * s_small.p50_ms  # ~60x the MACs: a real measurement, not a constant
    assert s_small.runs == s_big.runs == 30 and s_small.runtime == "onnxruntime"
    assert s_big.per_layer and s_big.per_layer[0]["op_type"] == "Conv" and len(s_big.per_layer) == 3
    assert steps[-1] == 2 * (3 + 1)  # the device runner's progress reached the caller
    workdir = Path(sshd.device()["workdir"])
    assert (workdir / "runner.py").is_file() and not list(workdir.glob("*.onnx"))  # models removed afterwards


def test_compile_measures_latency_on_the_device(sshd: SSHServer, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tiny_config(tmp_path))
    target = _target(tmp_path, sshd.device(required=True))
    res = edgekd.compile(cfg, target=target, out=tmp_path / "runs", quiet=True)
    lat = res.metrics["profile"]["results"]
    assert set(lat) >= {"onnx", "onnx_int8", "teacher_onnx"}
    for name, d in lat.items():
        assert d["measured"] and d["on_target"], name
        assert d["where"].startswith(f"device root@127.0.0.1:{sshd.port} ("), d["where"]
        assert 0 < d["p50_ms"] <= d["p99_ms"]
        assert d["per_layer"], name
    assert res.metrics["profile"]["device"]["address"] == f"root@127.0.0.1:{sshd.port}"
    result = json.loads(res.result_path.read_text())
    assert "device root@127.0.0.1" in json.dumps(result)
    assert not any("NOT measured" in n for n in res.notes)


def test_cli_compile_with_device_override(sshd: SSHServer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = write_config(tmp_path, tiny_config(tmp_path))
    dev = sshd.device()
    dev.update(kind="local", host=None, user=None, port=22)  # keys and known_hosts from the target, address from CLI
    target = _target(tmp_path, dev)
    argv = ["compile", str(cfg), "--target", str(target), "--out", str(tmp_path / "runs"), "-q", "--json"]
    rc = main([*argv, "--device", f"root@127.0.0.1:{sshd.port}"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    text = out.out
    assert text.count(f"device root@127.0.0.1:{sshd.port} (") >= 3  # onnx, onnx_int8 and teacher_onnx
    assert "stand-in" not in text


def test_unreachable_device_falls_back_to_host_with_a_note(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, tiny_config(tmp_path))
    dev = {"kind": "ssh", "host": "127.0.0.1", "port": port, "user": "root", "timeout_s": 2, "retries": 1}
    start = time.monotonic()
    res = edgekd.compile(cfg, target=_target(tmp_path, dev), out=tmp_path / "runs", quiet=True)
    for d in res.metrics["profile"]["results"].values():
        assert d["measured"] and not d["on_target"] and d["where"].startswith("measured on host")
    (note,) = [n for n in res.notes if "NOT measured on the device" in n]
    assert f"127.0.0.1:{port}" in note and "unreachable" in note and "device.required" in note
    assert note in (res.run_dir / "report.md").read_text()
    assert time.monotonic() - start < 120  # the whole tiny compile, with a 2 s connect timeout

    # the host stand-in is not cached: a second compile tries the device again (and every other pass is cached)
    again = edgekd.compile(cfg, target=_target(tmp_path, dev), out=tmp_path / "runs", quiet=True)
    events = [json.loads(x) for x in (again.run_dir / "events.jsonl").read_text().splitlines()]
    status = {e["pass_"]: e["status"] for e in events if e.get("event") == "pass_end"}
    assert status["profile"] == "ran" and status["distill"] == "cached"
    assert any("NOT measured on the device" in n for n in again.notes)


def test_required_device_unreachable_is_an_error_within_the_timeout(tmp_path: Path) -> None:
    model = _conv_model(tmp_path / "m.onnx")
    port = free_port()
    dev = {"kind": "ssh", "host": "127.0.0.1", "port": port, "timeout_s": 2, "retries": 1, "required": True}
    start = time.monotonic()
    with pytest.raises(DeviceError, match=f"127.0.0.1:{port} unreachable") as err:
        edgekd.profile(model, target=_target(tmp_path, dev))
    assert time.monotonic() - start < 2 * 2 + 5
    assert "device.required is true" in str(err.value) and "fix:" in str(err.value)


def test_cli_profile_with_device_override(sshd: SSHServer, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = _conv_model(tmp_path / "m.onnx")
    dev = sshd.device()
    dev.update(kind="local", host=None, user=None, port=22)  # the override supplies where to go
    target = _target(tmp_path, dev)
    rc = main(["profile", str(model), "--target", str(target), "--device", f"root@127.0.0.1:{sshd.port}", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    d = json.loads(out.out)
    assert d["on_target"] and d["where"].startswith(f"device root@127.0.0.1:{sshd.port}")
    assert d["p50_ms"] > 0 and d["runs"] == 20

    rc = main(["profile", str(model), "--target", str(target), "--device", "root@127.0.0.1; touch /tmp/x"])
    assert rc == 2 and "--device.host" in capsys.readouterr().err


def test_unknown_host_key_falls_back_and_says_why(sshd: SSHServer, tmp_path: Path) -> None:
    model = _conv_model(tmp_path / "m.onnx")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    (s,) = edgekd.profile(model, target=_target(tmp_path, sshd.device(known_hosts=str(empty))), runs=5, warmup=0)
    assert not s.on_target and "stand-in" in s.where
    with pytest.raises(DeviceError, match="host key verification failed"):
        edgekd.profile(model, target=_target(tmp_path, sshd.device(known_hosts=str(empty), required=True)))


def test_device_without_runtime_names_the_fix(sshd: SSHServer, tmp_path: Path) -> None:
    model = _conv_model(tmp_path / "m.onnx")
    fake_python = tmp_path / "python without ort"
    fake_python.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named numpy' >&2\nexit 1\n")
    fake_python.chmod(0o755)
    with pytest.raises(DeviceError, match="latency runner failed on device") as err:
        edgekd.profile(model, target=_target(tmp_path, sshd.device(python=str(fake_python), required=True)))
    assert "pip install onnxruntime numpy" in str(err.value)


# --------------------------------------------------------------------------- trtexec (TensorRT devices)

# A trtexec 10.x performance summary as printed on a GPU machine (format from NVIDIA/TensorRT issue #4177).
TRTEXEC_OUT = """\
&&&& RUNNING TensorRT.trtexec [TensorRT v100200] # trtexec --onnx=student.int8.onnx --int8 --fp16
[10/03/2024-10:47:55] [I] Engine built in 3.41536 sec.
[10/03/2024-10:47:56] [I] Timing trace has 391 queries over 3.00082 s
[10/03/2024-10:47:59] [I] === Performance summary ===
[10/03/2024-10:47:59] [I] Throughput: 130.298 qps
[10/03/2024-10:47:59] [I] Latency: min = 5.38672 ms, max = 13.3664 ms, mean = 7.60628 ms, median = 7.16092 ms, \
percentile(90%) = 10.2996 ms, percentile(95%) = 10.8698 ms, percentile(99%) = 12.9675 ms
[10/03/2024-10:47:59] [I] Enqueue Time: min = 2.72876 ms, max = 15.0201 ms, mean = 7.63062 ms, median = 7.86694 ms, \
percentile(90%) = 10.1792 ms, percentile(95%) = 11.7217 ms, percentile(99%) = 14.1848 ms
[10/03/2024-10:47:59] [I] GPU Compute Time: min = 5.34595 ms, max = 13.3388 ms, mean = 7.58404 ms, \
median = 7.14139 ms, \
percentile(90%) = 10.2881 ms, percentile(95%) = 10.8175 ms, percentile(99%) = 12.9485 ms
[10/03/2024-10:47:59] [I] Total Host Walltime: 3.00082 s
&&&& PASSED TensorRT.trtexec [TensorRT v100200] # trtexec --onnx=student.int8.onnx --int8 --fp16
"""


def test_parse_trtexec_summary() -> None:
    s = parse_trtexec(TRTEXEC_OUT)
    assert s["median_ms"] == pytest.approx(7.16092) and s["p90_ms"] == pytest.approx(10.2996)
    assert s["p99_ms"] == pytest.approx(12.9675) and s["min_ms"] == pytest.approx(5.38672)
    assert s["mean_ms"] == pytest.approx(7.60628) and s["throughput_qps"] == pytest.approx(130.298)
    assert s["build_ms"] == pytest.approx(3415.36) and s["iterations"] == 391
    assert s["tensorrt_version"] == "100200"
    with pytest.raises(ProfilingError, match="no 'Latency: min"):
        parse_trtexec(TRTEXEC_OUT.replace("Latency: min", "Lat: min"))


def test_parse_trtexec_layer_profile() -> None:
    doc = [
        {"count": 1024},
        {"name": "conv1 + relu1", "timeMs": 84.49, "averageMs": 0.0825, "medianMs": 0.0820, "percentage": 61.0},
        {"name": "Reformatting CopyNode for Input Tensor 0 to conv2", "timeMs": 8.05, "averageMs": 0.0079,
         "medianMs": 0.0078, "percentage": 5.8},
        {"name": "conv2 + add + relu2", "timeMs": 40.56, "averageMs": 0.0396, "medianMs": 0.0395, "percentage": 33.2},
    ]  # fmt: skip
    top = parse_trtexec_profile(json.dumps(doc), 2)
    assert [r["name"] for r in top] == ["conv1 + relu1", "conv2 + add + relu2"]
    assert top[0]["avg_ms"] == pytest.approx(0.0825) and top[0]["share"] == pytest.approx(0.61)
    with pytest.raises(ProfilingError, match="expected"):
        parse_trtexec_profile(json.dumps({"layers": []}), 3)


def test_trtexec_command_follows_precision_and_target_options() -> None:
    argv = trtexec_argv("/usr/src/tensorrt/bin/trtexec", "/tmp/e/00-student.int8.onnx", "int8", 500,
                        {"workspace_mb": 1024}, "/tmp/e/p.json")  # fmt: skip
    assert argv[:2] == ["/usr/src/tensorrt/bin/trtexec", "--onnx=/tmp/e/00-student.int8.onnx"]
    assert {"--int8", "--fp16", "--iterations=500", "--duration=0", "--memPoolSize=workspace:1024M"} <= set(argv)
    assert "--exportProfile=/tmp/e/p.json" in argv and "--dumpProfile" in argv
    fp32 = trtexec_argv("trtexec", "m.onnx", "fp32", 10, {}, None)
    assert "--int8" not in fp32 and "--fp16" not in fp32 and "--dumpProfile" not in fp32
    assert "--noTF32" in fp32 and "--noTF32" not in argv  # fp32 engines are timed in fp32, not TF32


def test_trtexec_warm_up_is_a_count_of_runs_not_milliseconds() -> None:
    # trtexec's --warmUp is milliseconds and it has no warm-up count: warm-up runs are the first iterations
    argv = trtexec_argv("trtexec", "m.onnx", "fp16", 30, {"warmup_ms": 999}, None, warmup=7, export_times="t.json")
    assert {"--warmUp=0", "--iterations=37", "--duration=0", "--exportTimes=t.json"} <= set(argv)
    assert not any(a.startswith("--warmUp=") and a != "--warmUp=0" for a in argv)  # runtime.options.warmup_ms unused
    with pytest.raises(ValueError, match="export_times"):
        trtexec_argv("trtexec", "m.onnx", "fp16", 30, {}, None, warmup=7)  # the summary would count warm-ups in


def test_trtexec_trace_drops_exactly_the_warm_up_runs() -> None:
    trace = [{"startEnqMs": i, "latencyMs": 100.0} for i in range(7)]  # cold runs: slow
    trace += [{"startEnqMs": 7 + i, "latencyMs": float(i + 1)} for i in range(30)]  # 1 .. 30 ms
    s = trace_stats(json.dumps(trace), warmup=7, runs=30)
    assert s["runs"] == 30 and s["max_ms"] == 30.0 and s["min_ms"] == 1.0
    assert s["p50_ms"] == pytest.approx(15.5) and s["mean_ms"] == pytest.approx(15.5)
    assert trace_stats(json.dumps(trace), warmup=0, runs=37)["max_ms"] == 100.0  # counted in without the drop
    with pytest.raises(ProfilingError, match="timed 37 iterations, 7 warm-up \\+ 40 asked for"):
        trace_stats(json.dumps(trace), warmup=7, runs=40)
    with pytest.raises(ProfilingError, match="latencyMs"):
        trace_stats(json.dumps([{"count": 3}]), warmup=0, runs=1)


def test_profile_warmup_reaches_trtexec_on_the_device(sshd: SSHServer, tmp_path: Path) -> None:
    """The profile pass's warm-up count travels to trtexec; a stand-in trtexec (TensorRT is not installed here)
    records its command line and writes the trace and summary trtexec writes."""
    fake = tmp_path / "trtexec"
    fake.write_text(f"""#!{sshd.python}
import json, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if "=" in a)
open({str(tmp_path / "argv.json")!r}, "w").write(json.dumps(sys.argv[1:]))
n = int(args["iterations"])
json.dump([{{"latencyMs": 50.0 if i < n - 4 else 2.0}} for i in range(n)], open(args["exportTimes"], "w"))
print("[I] Latency: min = 2 ms, max = 50 ms, mean = 20 ms, median = 2 ms, percentile(90%) = 50 ms")
""")
    fake.chmod(0o755)
    model = _conv_model(tmp_path / "m.onnx")
    doc = yaml.safe_load(_target(tmp_path, sshd.device(required=True)).read_text())
    doc.update(backends=["onnx", "tensorrt"], runtime={"name": "tensorrt", "options": {"trtexec": str(fake)}})
    path = tmp_path / "trt.yaml"
    path.write_text(yaml.safe_dump(doc))
    (s,) = edgekd.profile(model, target=path, warmup=6, runs=4)
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert "--warmUp=0" in argv and "--iterations=10" in argv
    assert s.runs == 4 and s.p50_ms == 2.0 and s.max_ms == 2.0  # the 6 warm-up runs (50 ms) are left out
    assert "warm-up 6 runs" in s.where


def test_tensorrt_device_without_trtexec_is_a_clear_error(sshd: SSHServer, tmp_path: Path) -> None:
    model = _conv_model(tmp_path / "m.onnx")
    doc = yaml.safe_load(_target(tmp_path, sshd.device(required=True)).read_text())
    doc.update(backends=["onnx", "tensorrt"], runtime={"name": "tensorrt", "options": {"trtexec": "no-such-trtexec"}})
    path = tmp_path / "trt.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(DeviceError, match="trtexec not found") as err:
        edgekd.profile(model, target=path)
    assert "runtime.options.trtexec" in str(err.value)


def test_runner_stays_python38_compatible() -> None:
    import ast

    from edgekd.latency.measure import RUNNER

    ast.parse(RUNNER.read_text(), feature_version=(3, 8))  # it is copied to devices with older Pythons
