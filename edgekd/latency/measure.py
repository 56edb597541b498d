"""Host latency measurement: runs ``runner.py`` in a fresh Python so the caller's memory does not skew RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekd.backends.base import backend_for_runtime, backend_of, load_function
from edgekd.core.errors import ProfilingError
from edgekd.core.process import communicate

RUNNER = Path(__file__).with_name("runner.py")


@dataclass
class LatencyStats:
    """Latency of one model at one batch size; times in milliseconds, memory in MiB."""

    path: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float | None
    min_ms: float
    max_ms: float
    throughput: float
    init_ms: float
    model_bytes: int
    rss_mb_delta: float | None
    peak_rss_mb: float | None
    threads: int
    batch: int
    runs: int
    runtime: str
    runtime_version: str
    providers: list[str] = field(default_factory=list)
    #: the slowest layers ({name, op_type, avg_ms, share}) when the runtime gives a per-layer profile
    per_layer: list[dict[str, Any]] | None = None
    #: why there is no per-layer profile when one was asked for and the runtime gives none (e.g. LiteRT files)
    per_layer_unsupported: str | None = None
    where: str = ""
    measured: bool = True
    on_target: bool = False
    #: measured-host (ONNX Runtime here), measured-device (on the target's device over SSH) or predicted
    source: str = "measured-host"
    #: the target's predicted latency record when these figures were taken on a stand-in host
    predicted: dict[str, Any] | None = None
    #: throughput is batch / mean latency of sequential runs (derived), not measured under concurrent load
    throughput_derived: bool = False
    #: timed runs at or above p99 (1: the p99 figure is a single run; raise profile.runs for a steadier tail)
    p99_samples: int | None = None
    #: the machine's 1/5/15-minute load average before and after the measurement session (None: not known)
    load_average: dict[str, list[float] | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["predicted"] is None:
            del d["predicted"]
        return d

    @classmethod
    def from_runner(cls, entry: dict[str, Any], where: str) -> LatencyStats:
        names = {
            f for f in cls.__dataclass_fields__ if f not in ("where", "measured", "on_target", "source", "predicted")
        }
        optional = {
            "providers", "per_layer", "per_layer_unsupported", "throughput_derived", "p99_samples", "load_average",
        }  # fmt: skip
        missing = names - entry.keys() - optional
        if missing:
            raise ProfilingError(
                f"runner output for {entry.get('path', '?')} lacks {sorted(missing)}",
                fix=f"use the runner.py shipped with this edgekd version ({RUNNER})",
            )
        return cls(**{k: entry[k] for k in names if k in entry}, where=where)


def measure(
    paths: Sequence[str | os.PathLike[str]],
    threads: int | None = None,
    warmup: int = 20,
    runs: int = 100,
    rounds: int = 5,
    batch: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    timeout: float | None = None,
    per_layer: int = 0,
    tflite_delegate: str = "xnnpack",
    clock: str = "wall",
    seq_len: int | None = None,
) -> list[LatencyStats]:
    """Measure ``paths`` (``.onnx`` in ONNX Runtime, ``.tflite`` in LiteRT) interleaved on this host in a subprocess;
    one LatencyStats per path, in order."""
    if not paths:
        return []
    cmd = [sys.executable, str(RUNNER), *[str(p) for p in paths]]
    cmd += ["--warmup", str(warmup), "--runs", str(runs), "--rounds", str(rounds), "--batch", str(batch)]
    cmd += ["--threads", str(threads or 0)]
    if per_layer:
        cmd += ["--per-layer", str(per_layer)]
    if tflite_delegate != "xnnpack":
        cmd += ["--tflite-delegate", tflite_delegate]
    if clock != "wall":
        cmd += ["--clock", clock]
    if seq_len:
        cmd += ["--seq-len", str(seq_len)]
    names = ", ".join(Path(p).name for p in paths)
    tail: deque[str] = deque(maxlen=20)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise ProfilingError(
            f"cannot start the latency runner for {names}: {exc}", fix=f"check {sys.executable}"
        ) from exc

    def on_line(line: str) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            msg = None
        if isinstance(msg, dict) and "progress" in msg:
            if on_progress is not None:
                on_progress(int(msg["progress"]), int(msg["total"]))
        elif line.strip():
            tail.append(line.rstrip())

    stdout, timed_out = communicate(proc, timeout, on_line)
    if timed_out:
        raise ProfilingError(
            f"latency measurement of {names} took longer than {timeout:g} s",
            fix="lower profile.runs / profile.warmup, or raise the timeout",
        )
    if proc.returncode != 0:
        details = "\n".join(tail) or f"exit code {proc.returncode}"
        raise ProfilingError(
            f"latency runner failed on {names} (exit code {proc.returncode}):\n{details}",
            fix=runner_failure_fix(paths, details, proc.returncode),
        )
    try:
        doc = json.loads(stdout)
    except ValueError as exc:
        raise ProfilingError(
            f"latency runner printed no valid JSON for {names}: {stdout[-500:]!r}",
            fix="make sure nothing else writes to the runner's stdout",
        ) from exc
    thread_text = f"{threads} threads" if threads else "default threads"
    machine = doc.get("host", {}).get("machine", "?")
    load = session_load(doc)
    clock_text = ", thread CPU time" if clock == "thread" else ""
    out = []
    for entry in doc["models"]:
        runtime = f"{entry.get('runtime', 'onnxruntime')} {entry.get('runtime_version', '?')}"
        if backend_for_runtime(entry.get("runtime", "onnxruntime")).delegates:  # say which delegate ran it
            runtime += f" ({', '.join(entry.get('providers') or [])})"
        where = f"host ({machine}, {thread_text}, {runtime}{clock_text})"
        out.append(LatencyStats.from_runner({**entry, "load_average": load}, where))
    return out


def runner_failure_fix(paths: Sequence[str | os.PathLike[str]], details: str, returncode: int) -> str:
    """The fix line for a runner failure: the cause its runtime's message shows (asked of the backend of the file
    the message names: its model class's ``load_failure_fix``), else what the exit code says, else that the
    cause is unknown."""
    for p in paths:
        b = backend_of(p)
        if b is None or str(p) not in details:
            continue
        classify = getattr(load_function(b.model), "load_failure_fix", None)
        fix = classify(details, p) if classify is not None else None
        if fix:
            return str(fix)
    if returncode == 2:  # the runner refused the arguments or a file (its message says which and why)
        return "check that the files are valid models with fixed input shapes (only the batch may be dynamic)"
    return (
        "the runtime's message above does not show the cause: check that each file loads in its runtime on its "
        "own (edgekd profile FILE) and re-run the lower pass for the one that does not"
    )


def session_load(doc: dict[str, Any]) -> dict[str, list[float] | None]:
    """The load average the runner saw before and after its session (from its JSON's ``host``)."""
    host = doc.get("host", {})
    return {"before": host.get("load_average_before"), "after": host.get("load_average_after")}
