"""Latency measured on a device over SSH.

ONNX Runtime / LiteRT targets: the standalone ``runner.py`` and the models are copied to ``device.workdir`` and
the runner runs there with ``device.python`` (which must have the runtime installed, as on any deployment
device); its JSON is parsed exactly like a host measurement. TensorRT targets: ``trtexec`` builds and times each
ONNX file on the device; its performance summary and per-layer profile (``--exportProfile``) are parsed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.backends.base import backend_for_runtime, load_function, remote_name
from edgekd.config.target import TargetConfig, Timing
from edgekd.core.errors import DeviceError, ProfilingError
from edgekd.latency.measure import RUNNER, LatencyStats, session_load
from edgekd.latency.ssh import SSHClient

ProgressFn = Callable[[int, int], None]


@dataclass
class DeviceRun:
    """Result of one device measurement: the stats (one per model, in order) and the device's description."""

    stats: list[LatencyStats]
    where: str
    device: dict[str, Any]


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
        timing: Timing,
        precisions: Sequence[str | None] | None = None,
        on_progress: ProgressFn | None = None,
    ) -> DeviceRun:
        """Copy ``paths`` to the device, time them there, remove them again; one LatencyStats per path."""
        try:
            uname = self.client.check()  # fails fast (and clearly) before any copy
            device_measure = backend_for_runtime(self.target.runtime.name).device_measure
            if device_measure is None:  # the standalone runner
                entries, where, device = self._runner(paths, timing, uname, on_progress)
            else:  # the backend's own tool (trtexec)
                entries, where, device = load_function(device_measure)(
                    self.client, self.target, paths, timing, precisions, uname, on_progress
                )
            stats = []
            for entry in entries:
                s = LatencyStats.from_runner(entry, where)
                s.on_target, s.source = True, "measured-device"
                stats.append(s)
            return DeviceRun(stats, where, device)
        finally:
            if self._owns_client:
                self.client.close()

    # ------------------------------------------------------------------ ONNX Runtime / LiteRT: runner.py

    def _runner(
        self, paths: Sequence[Path], timing: Timing, uname: str, on_progress: ProgressFn | None
    ) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
        """The runner's record of each file (local paths), where they were measured, and the device."""
        dev = self.target.device
        t = timing
        runner = self.client.put(RUNNER, dev.workdir, "runner.py")
        remote = [self.client.put(Path(p), dev.workdir, remote_name(i, Path(p))) for i, p in enumerate(paths)]
        argv: list[str] = [dev.python, runner, *remote]
        argv += ["--warmup", str(t.warmup), "--runs", str(t.runs), "--rounds", str(t.rounds), "--batch", str(t.batch)]
        argv += ["--threads", str(t.threads or 0)]
        if any(Path(p).suffix == ".tflite" for p in paths):  # the target's LiteRT delegate, as on the host
            argv += ["--tflite-delegate", str(self.target.runtime.options.get("delegate", "xnnpack"))]
        if t.seq_len:
            argv += ["--seq-len", str(t.seq_len)]
        if t.per_layer:
            argv += ["--per-layer", str(t.per_layer)]

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
        thread_text = f"{t.threads} threads" if t.threads else "default threads"
        where = (
            f"device {self.address} ({uname or host.get('machine', '?')}, {thread_text}, "
            f"{models[0].get('runtime', 'onnxruntime') if models else 'onnxruntime'} {version}, "
            f"Python {host.get('python', '?')})"
        )
        load = session_load(doc)
        entries = [
            {**entry, "path": str(local), "load_average": load} for local, entry in zip(paths, models, strict=True)
        ]
        return entries, where, {"address": self.address, "uname": uname, **host}


def measure_on_device(
    target: TargetConfig,
    paths: Sequence[Path],
    timing: Timing,
    precisions: Sequence[str | None] | None = None,
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
        return DeviceProfiler(target).measure(paths, timing, precisions, on_progress)
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
