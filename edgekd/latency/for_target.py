"""The one way edgekd measures model files for a target: on its SSH device when it has one and it can be used,
else on this host (labelled the target itself only when the host is the target), plus the target's predicted
figure where the host is a stand-in. The profile pass and ``edgekd.profile`` both call
:func:`measure_for_target`.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.backends.base import BACKENDS
from edgekd.config.target import TargetConfig, Timing
from edgekd.core.errors import ProfilingError
from edgekd.latency.device import measure_on_device
from edgekd.latency.measure import LatencyStats, measure
from edgekd.latency.predictor.lookup import load_for_target

Note = Callable[[str], None]


@dataclass
class TargetMeasurement:
    """One measurement of several files: stats in order, where they were taken, and whether that is the target."""

    stats: list[LatencyStats]
    where: str
    on_target: bool
    source: str  # measured-device | measured-host
    device: dict[str, Any] | None  # the device's description when measured there


def host_where(target: TargetConfig, note: Note) -> tuple[str, bool]:
    """Where host figures come from, and whether the host is the target; notes it when it is not."""
    local = [BACKENDS[b] for b in dict.fromkeys(["onnx", *target.backends]) if BACKENDS[b].local]
    runtimes = ", ".join([local[0].runtime, *(f"{b.runtime} for {b.suffixes[0]}" for b in local[1:])])
    if target.is_host:
        return f"measured on host ({platform.machine()}, {runtimes})", True
    if target.device.kind != "ssh":  # an unusable SSH device was noted by measure_on_device
        note(
            f"latency not measured on {target.name} (its runtime {target.runtime.name} runs on the "
            f"device, not here): the latencies shown were measured on this host ({runtimes}); give the "
            "target an SSH device (device.kind: ssh) or pass --device user@host to measure on the device"
        )
    return f"measured on host ({platform.machine()}, {runtimes}) as a stand-in, not on {target.name}", False


def measure_for_target(
    target: TargetConfig,
    paths: Sequence[str | os.PathLike[str]],
    timing: Timing,
    precisions: Sequence[str | None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    note: Note = lambda text: None,
) -> TargetMeasurement:
    """Latency of ``paths`` for ``target``, taken as ``timing`` says, on its device when possible."""
    files = [Path(p) for p in paths]
    device = measure_on_device(target, files, timing, precisions, on_progress, note)
    if device is not None:
        return TargetMeasurement(device.stats, device.where, True, "measured-device", device.device)
    where, on_target = host_where(target, note)
    stats = measure(
        files,
        threads=timing.threads,
        warmup=timing.warmup,
        runs=timing.runs,
        rounds=timing.rounds,
        batch=timing.batch,
        on_progress=on_progress,
        per_layer=timing.per_layer,
        tflite_delegate=str(target.runtime.options.get("delegate", "xnnpack")),
        seq_len=timing.seq_len,
    )
    for s in stats:
        s.where, s.on_target, s.source = where, on_target, "measured-host"
    return TargetMeasurement(stats, where, on_target, "measured-host", None)


def predicted_for(
    target: TargetConfig, paths: Sequence[str | os.PathLike[str]], per_layer: int, note: Note
) -> dict[str, dict[str, Any]]:
    """The target's predicted latency record of each file (by path) that its latency predictor of that kind of file
    (fp32 / INT8 ONNX, fp32 / INT8 ``.tflite``) can predict; notes why not for the others, or why a predictor could
    not be used. A target with no predictor at all gets no note; one with predictors of other kinds notes each
    file it cannot predict and the command that builds the missing predictor."""
    from edgekd.latency.predictor.files import PredictorKind, file_kind

    loaded: dict[PredictorKind, Any] = {}
    out = {}
    unpredicted: list[tuple[Path, PredictorKind]] = []
    for p in paths:
        try:
            kind = file_kind(p)
            if kind not in loaded:
                loaded[kind] = load_for_target(target, kind)
            pred = loaded[kind]
            if pred is None:
                unpredicted.append((Path(p), kind))
            else:
                out[str(p)] = pred.predict(p, target.profile.batch).to_latency(per_layer or 5)
        except ProfilingError as exc:
            note(f"{Path(p).name}: latency on {target.name} not predicted: {exc.message}")
    if any(v is not None for v in loaded.values()):
        for p, kind in unpredicted:
            note(
                f"{p.name}: latency on {target.name} not predicted: it has no {kind.key} latency predictor (build "
                f"it: edgekd profile --build-predictor --target {target.name} --precision {kind.precision})"
            )
    return out
