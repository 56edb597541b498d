"""Latency measured on a device over SSH.

ONNX Runtime / LiteRT targets: the standalone ``runner.py`` and the models are copied to ``device.workdir`` and
the runner runs there with ``device.python`` (which must have the runtime installed, as on any deployment
device); its JSON is parsed exactly like a host measurement. TensorRT targets: ``trtexec`` builds and times each
ONNX file on the device; its performance summary and per-layer profile (``--exportProfile``) are parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.config import TargetConfig
from edgekd.errors import DeviceError, ProfilingError
from edgekd.profiling.latency import RUNNER, LatencyStats
from edgekd.profiling.ssh import SSHClient, quote_command

ProgressFn = Callable[[int, int], None]


@dataclass
class DeviceRun:
    """Result of one device measurement: the stats (one per model, in order) and the device's description."""

    stats: list[LatencyStats]
    where: str
    device: dict[str, Any]


def _remote_name(i: int, path: Path) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", path.name)
    return f"{i:02d}-{safe}"


class DeviceProfiler:
    """Measures model files on ``target``'s SSH device (see the module docstring)."""

    def __init__(self, target: TargetConfig, client: SSHClient | None = None) -> None:
        if target.device.kind != "ssh":
            raise DeviceError(
                f"target {target.name} has no SSH device (device.kind: {target.device.kind})",
                fix="set device.kind: ssh and device.host in the target, or pass --device user@host[:port]",
            )
        self.target = target
        self._owns_client = client is None
        self.client = client or SSHClient(target.device, multiplex=True)  # one connection for the copies and runs

    @property
    def address(self) -> str:
        return self.client.address

    def measure(
        self,
        paths: Sequence[Path],
        warmup: int,
        runs: int,
        rounds: int,
        threads: int | None,
        batch: int,
        precisions: Sequence[str | None] | None = None,
        per_layer: int = 0,
        on_progress: ProgressFn | None = None,
    ) -> DeviceRun:
        """Copy ``paths`` to the device, time them there, remove them again; one LatencyStats per path."""
        try:
            uname = self.client.check()  # fails fast (and clearly) before any copy
            if self.target.runtime.name == "tensorrt":
                return self._trtexec(paths, warmup, runs, batch, precisions, per_layer, uname, on_progress)
            return self._runner(paths, warmup, runs, rounds, threads, batch, per_layer, uname, on_progress)
        finally:
            if self._owns_client:
                self.client.close()

    # ------------------------------------------------------------------ ONNX Runtime / LiteRT: runner.py

    def _runner(
        self,
        paths: Sequence[Path],
        warmup: int,
        runs: int,
        rounds: int,
        threads: int | None,
        batch: int,
        per_layer: int,
        uname: str,
        on_progress: ProgressFn | None,
    ) -> DeviceRun:
        dev = self.target.device
        runner = self.client.put(RUNNER, dev.workdir, "runner.py")
        remote = [self.client.put(Path(p), dev.workdir, _remote_name(i, Path(p))) for i, p in enumerate(paths)]
        argv: list[str] = [dev.python, runner, *remote]
        argv += ["--warmup", str(warmup), "--runs", str(runs), "--rounds", str(rounds), "--batch", str(batch)]
        argv += ["--threads", str(threads or 0)]
        if per_layer:
            argv += ["--per-layer", str(per_layer)]

        def on_line(line: str) -> None:
            try:
                msg = json.loads(line)
            except ValueError:
                return
            if on_progress is not None and isinstance(msg, dict) and "progress" in msg:
                on_progress(int(msg["progress"]), int(msg["total"]))

        try:
            res = self.client.run(argv, timeout=dev.run_timeout_s, on_stderr_line=on_line, check=False)
        finally:
            self.client.run(["rm", "-f", "--", *remote], timeout=dev.timeout_s * 3, check=False)
        if res.returncode != 0:
            lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith('{"progress"')]
            detail = "\n".join(lines[-10:]) or f"exit code {res.returncode}"
            hint = (
                f"install onnxruntime and numpy for {dev.python} on the device (pip install onnxruntime numpy)"
                if "not installed" in detail or "No module named" in detail or res.returncode == 127
                else f"run {dev.python} {runner} by hand on the device to see the problem"
            )
            raise DeviceError(
                f"latency runner failed on device {self.address} (exit {res.returncode}):\n{detail}", fix=hint
            )
        try:
            doc = json.loads(res.stdout)
        except ValueError as exc:
            raise DeviceError(
                f"device {self.address}: the runner printed no valid JSON: {res.stdout[-300:]!r}",
                fix="make sure the login shell of the device prints nothing on non-interactive logins",
            ) from exc
        host = doc.get("host", {})
        models = doc.get("models", [])
        version = models[0].get("runtime_version", "?") if models else "?"
        thread_text = f"{threads} threads" if threads else "default threads"
        where = (
            f"device {self.address} ({uname or host.get('machine', '?')}, {thread_text}, "
            f"{models[0].get('runtime', 'onnxruntime') if models else 'onnxruntime'} {version}, "
            f"Python {host.get('python', '?')})"
        )
        stats = []
        for local, entry in zip(paths, models, strict=True):
            s = LatencyStats.from_runner({**entry, "path": str(local)}, where)
            s.on_target = True
            s.source = "measured-device"
            stats.append(s)
        return DeviceRun(stats, where, {"address": self.address, "uname": uname, **host})

    # ------------------------------------------------------------------ TensorRT: trtexec

    def _trtexec(
        self,
        paths: Sequence[Path],
        warmup: int,
        runs: int,
        batch: int,
        precisions: Sequence[str | None] | None,
        per_layer: int,
        uname: str,
        on_progress: ProgressFn | None,
    ) -> DeviceRun:
        dev = self.target.device
        opts = self.target.runtime.options
        binary = str(opts.get("trtexec", "trtexec"))
        found = (
            self.client.run(
                f"command -v {_q(binary)} || command -v /usr/src/tensorrt/bin/trtexec",
                timeout=dev.timeout_s * 3,
                check=False,
            )
            .stdout.strip()
            .splitlines()
        )
        if not found:
            raise DeviceError(
                f"device {self.address}: trtexec not found (looked for {binary!r} on PATH and "
                "/usr/src/tensorrt/bin/trtexec)",
                fix="install TensorRT on the device (JetPack ships it) or set runtime.options.trtexec: PATH",
            )
        binary = found[0]
        stats: list[LatencyStats] = []
        version = "?"
        precisions = list(precisions or [None] * len(paths))
        for i, path in enumerate(paths):
            remote = self.client.put(Path(path), dev.workdir, _remote_name(i, Path(path)))
            profile = remote + ".profile.json"
            argv = trtexec_argv(binary, remote, precisions[i], runs, opts, profile if per_layer else None)
            try:
                res = self.client.run(argv, timeout=dev.run_timeout_s, check=False)
                layers_text = (
                    self.client.run(["cat", "--", profile], timeout=dev.timeout_s * 3, check=False).stdout
                    if per_layer and res.returncode == 0
                    else ""
                )
            finally:
                self.client.run(["rm", "-f", "--", remote, profile], timeout=dev.timeout_s * 3, check=False)
            if res.returncode != 0:
                raise DeviceError(
                    f"trtexec failed on device {self.address} for {Path(path).name} (exit {res.returncode}):\n"
                    + "\n".join((res.stdout + res.stderr).strip().splitlines()[-12:]),
                    fix="run the same trtexec command on the device by hand: " + quote_command(argv),
                )
            summary = parse_trtexec(res.stdout)
            version = summary.get("tensorrt_version") or version
            entry = {
                "path": str(path),
                "p50_ms": summary["median_ms"],
                "p90_ms": summary.get("p90_ms", summary["max_ms"]),
                "p99_ms": summary.get("p99_ms", summary["max_ms"]),
                "mean_ms": summary["mean_ms"],
                "std_ms": None,
                "min_ms": summary["min_ms"],
                "max_ms": summary["max_ms"],
                "throughput": summary.get("throughput_qps", 1000.0 / summary["mean_ms"]) * batch,
                "init_ms": summary.get("build_ms", 0.0),
                "model_bytes": Path(path).stat().st_size,
                "rss_mb_delta": None,
                "peak_rss_mb": None,
                "threads": 0,
                "batch": batch,
                "runs": summary.get("iterations", runs),
                "runtime": "tensorrt",
                "runtime_version": version,
                "providers": ["trtexec"],
                "per_layer": parse_trtexec_profile(layers_text, per_layer) if layers_text else None,
            }
            stats.append(LatencyStats.from_runner(entry, ""))
            if on_progress is not None:
                on_progress(i + 1, len(paths))
        where = f"device {self.address} ({uname}, TensorRT {version} via trtexec, warm-up {warmup_text(opts)})"
        for s in stats:
            s.where, s.on_target, s.source = where, True, "measured-device"
        return DeviceRun(stats, where, {"address": self.address, "uname": uname, "tensorrt": version})


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def warmup_text(opts: dict[str, Any]) -> str:
    return f"{int(opts.get('warmup_ms', 200))} ms"


def trtexec_argv(
    binary: str, onnx: str, precision: str | None, runs: int, opts: dict[str, Any], export_profile: str | None
) -> list[str]:
    """The trtexec command that builds and times ``onnx`` on the device.

    trtexec's warm-up is a duration (``--warmUp`` in ms, ``runtime.options.warmup_ms``, default 200), not a count;
    ``--iterations`` is the target's ``profile.runs`` with ``--duration=0`` so exactly that many are timed.
    """
    argv = [
        binary,
        f"--onnx={onnx}",
        f"--iterations={runs}",
        "--duration=0",
        f"--warmUp={int(opts.get('warmup_ms', 200))}",
    ]
    if precision == "int8":
        argv += ["--int8", "--fp16"]  # explicit QDQ scales; fp16 where a layer has no int8 kernel
    elif precision == "fp16":
        argv += ["--fp16"]
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


def measure_on_device(
    target: TargetConfig,
    paths: Sequence[Path],
    warmup: int,
    runs: int,
    rounds: int,
    threads: int | None,
    batch: int,
    precisions: Sequence[str | None] | None = None,
    per_layer: int = 0,
    on_progress: ProgressFn | None = None,
    note: Callable[[str], None] | None = None,
) -> DeviceRun | None:
    """Measure on ``target``'s SSH device; ``None`` when it has none, or when it cannot be used and is not required.

    A device that cannot be used (unreachable after the timeout and retries, refused host key or login, runner
    failure) raises when ``device.required`` is true; otherwise ``note`` gets one plain sentence saying why, and the
    caller measures on the host and marks those figures as host measurements.
    """
    if target.device.kind != "ssh":
        return None
    try:
        return DeviceProfiler(target).measure(
            paths, warmup, runs, rounds, threads, batch, precisions, per_layer, on_progress
        )
    except ProfilingError as exc:
        if target.device.required:
            raise DeviceError(
                f"device.required is true and the device of target {target.name} could not be used: {exc.message}",
                fix=exc.fix,
            ) from exc
        if note is not None:
            first = exc.message.splitlines()[0]
            note(
                f"latency NOT measured on the device {target.device.address}: {first}. The latencies shown were "
                "measured on this host instead and are marked as host measurements "
                f"(fix: {exc.fix}; set device.required: true to make this an error)"
            )
        return None
