"""TensorRT at run time: engines run on this machine's GPU (:class:`TrtModel`, where TensorRT imports), and the
``trtexec`` runs that build and time an ONNX file on a device (command, output parsers, the device measurement).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.backends.base import remote_name
from edgekd.config.target import Timing
from edgekd.core.errors import BackendUnavailable, DeviceError, ProfilingError

ProgressFn = Callable[[int, int], None]


def tensorrt_status() -> tuple[bool, str]:
    """(True, version) when TensorRT imports and a CUDA GPU is visible; else (False, why not)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        return False, (
            f"the tensorrt Python package is not installed here ({exc}); it cannot be installed from the package "
            "registries this machine reaches (JetPack / NVIDIA's repositories ship it)"
        )
    try:
        import torch

        gpu = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is a core dependency
        gpu = False
    if not gpu:
        return False, f"TensorRT {trt.__version__} imports, but no CUDA GPU is visible on this machine"
    return True, str(trt.__version__)


class TrtModel:
    """A deserialized engine run on the GPU through torch's CUDA tensors (one input, one output)."""

    def __init__(self, engine_path: str | os.PathLike[str]) -> None:
        ok, why = tensorrt_status()
        if not ok:
            raise BackendUnavailable(f"cannot run a TensorRT engine here: {why}", fix="run it on the device")
        import tensorrt as trt
        import torch

        self.torch = torch
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
            Path(engine_path).read_bytes()
        )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)

    def _bind(self, x: np.ndarray) -> tuple[Any, Any]:
        """Copy ``x`` to the GPU, bind it and a fresh output buffer; returns (output, stream). The input tensor
        stays alive as ``self._inp`` while the engine reads it."""
        torch = self.torch
        self._inp = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda()
        self.context.set_input_shape(self.input, tuple(self._inp.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.input, self._inp.data_ptr())
        self.context.set_tensor_address(self.output, out.data_ptr())
        return out, torch.cuda.current_stream()

    def run(self, x: np.ndarray) -> np.ndarray:
        out, stream = self._bind(x)
        self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return out.cpu().numpy()

    def predict(self, x: np.ndarray, batch_size: int = 1) -> np.ndarray:
        fixed = int(self.engine.get_tensor_shape(self.input)[0])
        step = fixed if fixed > 0 else batch_size
        return np.concatenate([self.run(x[i : i + step]) for i in range(0, len(x), step)])

    def latency_ms(self, x: np.ndarray, warmup: int = 50, runs: int = 500) -> list[float]:
        """Per-inference GPU latencies (CUDA events), input already on the device."""
        torch = self.torch
        _out, stream = self._bind(x)  # the engine writes into _out: keep it alive while timing
        for _ in range(warmup):
            self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        times = []
        for _ in range(runs):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(stream)
            self.context.execute_async_v3(stream.cuda_stream)
            b.record(stream)
            b.synchronize()
            times.append(float(a.elapsed_time(b)))
        return times


def trtexec_argv(
    binary: str,
    onnx: str,
    precision: str | None,
    runs: int,
    opts: dict[str, Any],
    export_profile: str | None,
    warmup: int = 0,
    export_times: str | None = None,
) -> list[str]:
    """The trtexec command that builds and times ``onnx`` on the device.

    ``warmup`` is a count of untimed runs (the profile pass's ``warmup``, as for every runtime). trtexec has no
    warm-up count: its ``--warmUp`` is a duration in milliseconds. So ``--warmUp=0`` and ``--iterations`` is
    ``warmup + runs`` with ``--duration=0`` (exactly that many, no extra ones to fill a duration);
    ``--exportTimes`` writes each iteration's latency and :func:`trace_stats` drops the first ``warmup`` of
    them, so the figures are over exactly ``runs`` runs after exactly ``warmup`` warm-up runs. trtexec's own
    summary would count the warm-up runs in, so ``warmup > 0`` needs ``export_times``.
    """
    if warmup < 0 or runs < 1:
        raise ValueError(f"trtexec timing needs warmup >= 0 and runs >= 1, got {warmup} and {runs}")
    if warmup and export_times is None:
        raise ValueError("warm-up runs are dropped from the --exportTimes trace: give export_times")
    argv = [binary, f"--onnx={onnx}", f"--iterations={warmup + runs}", "--duration=0", "--warmUp=0"]
    if export_times is not None:
        argv += [f"--exportTimes={export_times}"]
    if precision == "int8":
        argv += ["--int8", "--fp16"]  # explicit QDQ scales; fp16 where a layer has no int8 kernel
    elif precision == "fp16":
        argv += ["--fp16"]
    elif precision == "fp32":
        argv += ["--noTF32"]  # fp32 means fp32: TensorRT would otherwise use TF32 tensor cores on Ampere and later
    if "workspace_mb" in opts:
        argv += [f"--memPoolSize=workspace:{int(opts['workspace_mb'])}M"]
    if export_profile:
        argv += ["--dumpProfile", "--separateProfileRun", f"--exportProfile={export_profile}"]
    for flag in opts.get("trtexec_flags", []):
        argv.append(str(flag))
    return argv


_NUM = r"([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)"


def parse_trtexec(text: str) -> dict[str, Any]:
    """p50/p90/p99/mean/min/max latency (ms) and throughput from trtexec's ``=== Performance summary ===``.

    Reads the ``Latency:`` line (host latency: H2D + compute + D2H, what an application sees) of TensorRT 8/10:
    ``Latency: min = 5.38 ms, max = 13.3 ms, mean = 7.60 ms, median = 7.16 ms, percentile(90%) = ..., ...``.
    """
    out: dict[str, Any] = {}
    m = re.search(r"TensorRT(?: version:| v| \[TensorRT v)\s*([0-9.]+)", text)
    if m:
        out["tensorrt_version"] = m.group(1)
    m = re.search(r"Throughput:\s*" + _NUM + r"\s*qps", text)
    if m:
        out["throughput_qps"] = float(m.group(1))
    line = None
    for ln in text.splitlines():
        if re.search(r"\]\s*Latency:\s*min", ln) or ln.strip().startswith("Latency: min"):
            line = ln
    if line is None:
        raise ProfilingError(
            "trtexec output has no 'Latency: min = ...' performance summary line",
            fix="use TensorRT >= 8 (trtexec prints '=== Performance summary ===') and check that the run finished",
        )
    for key, pat in (("min_ms", "min"), ("max_ms", "max"), ("mean_ms", "mean"), ("median_ms", "median")):
        m = re.search(pat + r"\s*=?\s*" + _NUM + r"\s*ms", line)
        if m:
            out[key] = float(m.group(1))
    for m in re.finditer(r"percentile\(([0-9.]+)%\)\s*=?\s*" + _NUM + r"\s*ms", line):
        out[f"p{float(m.group(1)):g}_ms"] = float(m.group(2))
    missing = [k for k in ("min_ms", "max_ms", "mean_ms", "median_ms") if k not in out]
    if missing:
        raise ProfilingError(
            f"trtexec latency line lacks {missing}: {line.strip()!r}", fix="report this trtexec version"
        )
    m = re.search(r"Engine built in\s*" + _NUM + r"\s*sec", text)
    if m:
        out["build_ms"] = float(m.group(1)) * 1000.0
    m = re.search(r"Timing trace has\s*([0-9]+)\s*queries", text)
    if m:
        out["iterations"] = int(m.group(1))
    return out


def trace_stats(text: str, warmup: int, runs: int) -> dict[str, Any]:
    """p50/p90/p99/mean/std/min/max latency (ms) of the timed runs in a trtexec ``--exportTimes`` trace: the first
    ``warmup`` iterations are dropped (the warm-up runs, see :func:`trtexec_argv`), the next ``runs`` kept.

    The trace is ``[{"startEnqMs": ..., ..., "latencyMs": ...}, ...]``, one entry per iteration; ``latencyMs`` is
    trtexec's host latency (H2D + compute + D2H, what an application sees), as in its summary's ``Latency:``."""
    try:
        doc = json.loads(text)
        latencies = [float(e["latencyMs"]) for e in doc]
    except (ValueError, TypeError, KeyError) as exc:
        raise ProfilingError(
            f"trtexec timing trace is not a list of iterations with latencyMs: {text[:200]!r}",
            fix="check --exportTimes (TensorRT >= 7)",
        ) from exc
    timed = latencies[warmup : warmup + runs]
    if len(latencies) < warmup + runs or not timed:
        raise ProfilingError(
            f"trtexec timed {len(latencies)} iterations, {warmup} warm-up + {runs} asked for",
            fix="check that no trtexec_flags override --iterations or --duration",
        )
    a = np.asarray(timed, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "std_ms": float(a.std()),
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
        "runs": int(a.size),
        "warmup_runs": warmup,
    }


def parse_trtexec_profile(text: str, top_k: int) -> list[dict[str, Any]]:
    """Top-``top_k`` layers from trtexec ``--exportProfile`` JSON.

    The file is ``[{"count": N}, {"name": ..., "timeMs": ..., "averageMs": ..., "medianMs": ..., "percentage": ...}]``.
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ProfilingError(f"trtexec profile is not JSON: {text[:200]!r}", fix="check --exportProfile") from exc
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], dict) or "count" not in doc[0]:
        raise ProfilingError("trtexec profile: expected [{'count': N}, {layer}, ...]", fix="check --exportProfile")
    rows = [r for r in doc[1:] if isinstance(r, dict) and "name" in r and "averageMs" in r]
    total = sum(float(r["averageMs"]) for r in rows) or 1.0
    ranked = sorted(rows, key=lambda r: -float(r["averageMs"]))[:top_k]
    return [
        {
            "name": str(r["name"]),
            "op_type": "trt-layer",
            "avg_ms": float(r["averageMs"]),
            "median_ms": float(r.get("medianMs", r["averageMs"])),
            "share": float(r.get("percentage", 100.0 * float(r["averageMs"]) / total)) / 100.0,
        }
        for r in ranked
    ]


def measure_with_trtexec(
    client: Any,
    target: Any,
    paths: Sequence[Path],
    timing: Timing,
    precisions: Sequence[str | None] | None,
    uname: str,
    on_progress: ProgressFn | None,
) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
    """Build and time each ONNX file with ``trtexec`` on ``target``'s device over ``client`` (an SSH client); the
    device profiler's way to measure a TensorRT target. Returns (one runner-style record per file, where, device).
    ``timing.rounds`` and ``timing.threads`` are not trtexec's: it times the runs of one file in a row on the GPU."""
    runs, batch, per_layer, warmup = timing.runs, timing.batch, timing.per_layer, timing.warmup
    dev = target.device
    opts = target.runtime.options
    binary = str(opts.get("trtexec", "trtexec"))
    found = (
        client.run(
            f"command -v {shlex.quote(binary)} || command -v /usr/src/tensorrt/bin/trtexec",
            timeout=dev.timeout_s * 3,
            check=False,
        )
        .stdout.strip()
        .splitlines()
    )
    if not found:
        raise DeviceError(
            f"device {client.address}: trtexec not found (looked for {binary!r} on PATH and "
            "/usr/src/tensorrt/bin/trtexec)",
            fix="install TensorRT on the device (JetPack ships it) or set runtime.options.trtexec: PATH",
        )
    binary = found[0]
    stats: list[dict[str, Any]] = []
    version = "?"
    precisions = list(precisions or [None] * len(paths))
    for i, path in enumerate(paths):
        remote = client.put(Path(path), dev.workdir, remote_name(i, Path(path)))
        profile, times = remote + ".profile.json", remote + ".times.json"
        argv = trtexec_argv(binary, remote, precisions[i], runs, opts, profile if per_layer else None, warmup, times)
        try:
            res = client.run(argv, timeout=dev.run_timeout_s, check=False)
            ok = res.returncode == 0
            cat = ["cat", "--"]
            times_text = client.run([*cat, times], timeout=dev.timeout_s * 3, check=False).stdout if ok else ""
            layers_text = (
                client.run([*cat, profile], timeout=dev.timeout_s * 3, check=False).stdout if per_layer and ok else ""
            )
        finally:
            client.run(["rm", "-f", "--", remote, profile, times], timeout=dev.timeout_s * 3, check=False)
        if res.returncode != 0:
            raise DeviceError(
                f"trtexec failed on device {client.address} for {Path(path).name} (exit {res.returncode}):\n"
                + "\n".join((res.stdout + res.stderr).strip().splitlines()[-12:]),
                fix="run the same trtexec command on the device by hand: " + shlex.join(argv),
            )
        summary = parse_trtexec(res.stdout)
        version = summary.get("tensorrt_version") or version
        timed = trace_stats(times_text, warmup, runs)  # the summary would count the warm-up runs in
        entry = {
            "path": str(path),
            **{k: timed[k] for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms")},
            "throughput": batch * 1000.0 / timed["mean_ms"] if timed["mean_ms"] > 0 else float("inf"),
            "throughput_derived": True,  # batch / mean latency of the timed runs, as the standalone runner's
            "init_ms": summary.get("build_ms", 0.0),
            "model_bytes": Path(path).stat().st_size,
            "rss_mb_delta": None,
            "peak_rss_mb": None,
            "threads": 0,
            "batch": batch,
            "runs": timed["runs"],
            "runtime": "tensorrt",
            "runtime_version": version,
            "providers": ["trtexec"],
            "per_layer": parse_trtexec_profile(layers_text, per_layer) if layers_text else None,
        }
        stats.append(entry)
        if on_progress is not None:
            on_progress(i + 1, len(paths))
    where = f"device {client.address} ({uname}, TensorRT {version} via trtexec, warm-up {warmup} runs)"
    return stats, where, {"address": client.address, "uname": uname, "tensorrt": version}
