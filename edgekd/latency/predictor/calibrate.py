"""Build a latency predictor for a target: generate calibration models, measure them there, fit the kernel table.

The calibration set is random (seeded) so that it covers many shapes: ResNet-like networks (2-4 stages of 1-4
basic blocks, widths often multiples of 16 or 8, kernel 1/3/5/7, 1 or 3 input channels, 12-64 px inputs),
MobileNet-like networks (stages of inverted residual blocks: expand ratios 1-6, depthwise kernels 3/5/7, a
strided stem, an optional 1x1 head, as in the search's MobileNet and shrink spaces) and plain stacks (conv-bn-relu
of random kernel/stride/width, depthwise-separable blocks, max-pooling).
Each is written as the kind of file the predictor predicts (:mod:`edgekd.latency.predictor.artifacts`: fp32 or
QDQ INT8 ONNX, fp32 or full-INT8 ``.tflite``) and measured by the standalone runner on the target's device (or
this host when the target runs here), interleaved, ``repeats`` times; the median p50 of each model is what the
table is fitted on. Every repeat must run where the first did: a device that fails on a later repeat stops the
calibration (device and host timings are never mixed into one median).
"""

from __future__ import annotations

import random
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.config.target import TargetConfig
from edgekd.core.errors import ProfilingError
from edgekd.latency.device import measure_on_device
from edgekd.latency.measure import measure
from edgekd.latency.predictor.artifacts import ArtifactSettings, write_artifact
from edgekd.latency.predictor.files import PredictorKind, detect_file
from edgekd.latency.predictor.fit import CHANNEL_BLOCKS
from edgekd.latency.predictor.model import LatencyPredictor
from edgekd.models.count import count_macs
from edgekd.models.zoo.mobilenet import MobileNetLike
from edgekd.models.zoo.resnet import CifarResNet

MAX_MACS = 200e6  # keeps one calibration model within a few milliseconds on a small CPU


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def plain_stack(spec: dict[str, Any]) -> nn.Module:
    """A sequential CNN from ``spec`` (layers: [kind, cout, kernel, stride]) ending in pooling and a classifier."""
    layers: list[nn.Module] = []
    cin = spec["in_channels"]
    for kind, cout, k, stride in spec["layers"]:
        if kind == "conv":
            layers += _conv_bn_relu(cin, cout, k, stride)
        elif kind == "sep":  # depthwise-separable: dw kxk then pointwise 1x1
            layers += _conv_bn_relu(cin, cin, k, stride, groups=cin) + _conv_bn_relu(cin, cout, 1, 1)
        elif kind == "maxpool":
            layers.append(nn.MaxPool2d(2))
            cout = cin
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(cin, spec["num_classes"])]
    return nn.Sequential(*layers)


MOBILENET_KEYS = ("depths", "widths", "expand", "kernel", "stem", "head", "stem_stride", "in_channels", "num_classes")


def build_spec(spec: dict[str, Any]) -> nn.Module:
    if spec["kind"] == "resnet":
        p = {k: spec[k] for k in ("blocks", "widths", "kernel", "in_channels", "num_classes")}
        return CifarResNet(**p)
    if spec["kind"] == "mobilenet":
        return MobileNetLike(**{k: spec[k] for k in MOBILENET_KEYS})
    return plain_stack(spec)


def _width(rng: random.Random, top: int = 160) -> int:
    """A channel count: multiples of 16 and of 8 are common in real networks and run on faster paths; narrow
    stages (8, 12) are common in small edge models and in the search spaces, and blocked runtimes run them on
    their own kernels (fewer input channels than the block), so they are drawn often enough to be fitted."""
    r = rng.random()
    if r < 0.15:
        return rng.choice([8, 12])
    if r < 0.5:
        return 16 * rng.randint(1, top // 16)
    if r < 0.75:
        return 8 * rng.randint(1, top // 8)
    return rng.randint(4, top)


def random_spec(rng: random.Random) -> dict[str, Any]:
    size = rng.choice([12, 16, 20, 24, 28, 32, 40, 48, 56, 64])
    common = {"in_channels": rng.choice([1, 3]), "num_classes": rng.choice([10, 100]), "size": size}
    r = rng.random()
    if r < 0.3:  # inverted residuals: MobileNetV2 / EfficientNet-Lite blocks, the MobileNet and shrink spaces
        stages = rng.choice([2, 3, 3, 4, 5])
        stride = rng.choice([1, 1, 2])
        return {
            "kind": "mobilenet",
            **common,
            "size": common["size"] * stride,
            "depths": [rng.randint(1, 3) for _ in range(stages)],
            "widths": sorted(_width(rng, 160) for _ in range(stages)),
            "expand": [rng.choice([1, 2, 3, 4, 6]) for _ in range(stages)],
            "kernel": [rng.choice([3, 3, 5, 7]) for _ in range(stages)],
            "stem": rng.choice([8, 16, 16, 24, 32]),
            "head": rng.choice([None, None, 128, 256]),
            "stem_stride": stride,
        }
    if r < 0.7:
        stages = rng.choice([2, 3, 3, 4])
        return {
            "kind": "resnet",
            **common,
            "blocks": [rng.randint(1, 4) for _ in range(stages)],
            "widths": sorted(_width(rng, 128) for _ in range(stages)),
            "kernel": rng.choice([1, 3, 3, 5, 7]),
        }
    layers = []
    for _ in range(rng.randint(2, 8)):
        kind = rng.choice(["conv", "conv", "sep", "maxpool"])
        layers.append([kind, _width(rng), rng.choice([1, 3, 3, 5, 7]), rng.choice([1, 1, 2])])
    return {"kind": "plain", **common, "layers": layers}


def spec_key(spec: dict[str, Any]) -> str:
    """A canonical text of a spec (to check that benchmark models are not calibration models)."""
    return repr(sorted((k, repr(v)) for k, v in spec.items()))


def calibration_specs(n: int, seed: int = 0, max_macs: float | None = None) -> list[dict[str, Any]]:
    """``n`` distinct random specs within ``max_macs`` (default MAX_MACS)."""
    max_macs = MAX_MACS if max_macs is None else max_macs
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(out) < n:
        spec = random_spec(rng)
        key = spec_key(spec)
        if key in seen:
            continue
        shape = (spec["in_channels"], spec["size"], spec["size"])
        try:
            with torch.device("meta"):  # shapes only (no weights, no arithmetic): rejects large models cheaply
                if count_macs(build_spec(spec), shape) > max_macs:
                    continue
        except RuntimeError:
            pass  # decided on the CPU below
        try:
            macs = count_macs(build_spec(spec), shape)
        except RuntimeError:  # downsampled below 1 pixel
            continue
        if macs > max_macs:
            continue
        seen.add(key)
        out.append(spec)
    return out


def export_spec(
    spec: dict[str, Any],
    path: Path,
    seed: int = 0,
    kind: PredictorKind | None = None,
    settings: ArtifactSettings | None = None,
) -> Path:
    """The model of ``spec`` written as a file of ``kind`` (default fp32 ONNX) at ``path`` (its suffix is the
    kind's: ``calib000.onnx``, ``calib000.int8.onnx``, ``calib000.fp32.tflite``, ...); returns the path."""
    torch.manual_seed(seed)
    model = build_spec(spec).eval()
    shape = (spec["in_channels"], spec["size"], spec["size"])
    stem = path.with_name(path.name.split(".")[0])
    return write_artifact(model, shape, kind or PredictorKind(), stem, settings, seed)


def measure_files(
    target: TargetConfig,
    paths: list[Path],
    repeats: int = 3,
    warmup: int | None = None,
    runs: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    clock: str = "wall",
    precisions: list[str | None] | None = None,
) -> tuple[list[float], list[float], dict[str, Any]]:
    """Median p50 per file over ``repeats`` interleaved measurements on the target, the spread (max-min)/median of
    each, and a description of where they ran. Refuses a target that is neither this host nor reachable.
    ``clock="thread"`` (this host, one thread) times thread CPU time instead of wall time (see runner.measure)."""
    timing = target.timing(warmup, runs)
    p50s: list[list[float]] = [[] for _ in paths]
    where, info = "", {}
    why: list[str] = []
    first_source = ""
    delegate = str(target.runtime.options.get("delegate", "xnnpack"))
    for r in range(repeats):
        order = list(range(len(paths)))
        if r % 2:
            order.reverse()  # alternate the order so no model is always measured first
        files = [paths[i] for i in order]
        dev = None if clock != "wall" else measure_on_device(target, files, timing, precisions, note=why.append)
        source = "device" if dev is not None else "host"
        if first_source and source != first_source:
            reason = f": {why[-1]}" if why and source == "host" else ""
            raise ProfilingError(
                f"calibration of {target.name}: repeat {r + 1} of {repeats} ran on the {source}, repeat 1 on the "
                f"{first_source}{reason}",
                fix="device and host timings are never mixed into one median: make the device reachable for the "
                "whole calibration (or set device.required: true to stop at the first failure) and build again",
            )
        first_source = source
        if dev is not None:
            stats, where, info = dev.stats, dev.where, {"address": dev.device.get("address"), **dev.device}
        elif target.is_host:
            stats = measure(
                files, threads=timing.threads, warmup=timing.warmup, runs=timing.runs, rounds=timing.rounds,
                batch=timing.batch, clock=clock, tflite_delegate=delegate,
            )  # fmt: skip
            where = stats[0].where if stats else "host"
            info = {"machine": where}
        else:
            reason = f" ({why[0]})" if why else ""
            raise ProfilingError(
                f"cannot measure on {target.name}: it is not this host and its device cannot be used{reason}",
                fix="give the target a reachable SSH device (device.kind: ssh) or pass --device user@host",
            )
        for i, s in zip(order, stats, strict=True):
            p50s[i].append(s.p50_ms)
        if on_progress is not None:
            on_progress(r + 1, repeats)
    med = [statistics.median(v) for v in p50s]
    spread = [(max(v) - min(v)) / m if m > 0 else 0.0 for v, m in zip(p50s, med, strict=True)]
    first = stats[0] if stats else None
    device = {
        "where": where,
        "threads": timing.threads,
        "batch": timing.batch,
        "runtime": first.runtime if first else None,
        "runtime_version": first.runtime_version if first else None,
        "runs": timing.runs,
        "repeats": repeats,
        "clock": clock,
        # LiteRT: the delegate asked for and what ran each file (XNNPACK declines nodes it cannot run)
        **(
            {"delegate": delegate, "kernels_ran": sorted({p for s in stats for p in s.providers})}
            if any(p.suffix == ".tflite" for p in paths)
            else {}
        ),
        **{k: v for k, v in info.items() if k not in ("where",)},
    }
    return med, spread, device


def build_predictor(
    target: TargetConfig,
    models: int = 60,
    repeats: int = 3,
    seed: int = 0,
    runs: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    max_macs: float | None = None,
    kind: PredictorKind | None = None,
    on_written: Callable[[int, int], None] | None = None,
) -> LatencyPredictor:
    """Measure ``models`` random calibration models, written as files of ``kind`` (default: fp32 of the format the
    target ships), on ``target`` and fit its latency predictor."""
    from edgekd.latency.predictor.files import target_artifact

    kind = kind or PredictorKind(target_artifact(target), "fp32")
    settings = ArtifactSettings.of(target)
    specs = calibration_specs(models, seed, max_macs)
    with tempfile.TemporaryDirectory(prefix="edgekd-calib-") as tmp:
        paths = []
        for i, s in enumerate(specs):
            paths.append(export_spec(s, Path(tmp) / f"calib{i:03d}", seed, kind, settings))
            if on_written is not None:
                on_written(i + 1, len(specs))
        return fit_files(target, specs, paths, repeats, runs, on_progress, kind=kind, settings=settings)


def fit_files(
    target: TargetConfig,
    specs: list[dict[str, Any]],
    paths: list[Path],
    repeats: int = 3,
    runs: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    clock: str = "wall",
    kind: PredictorKind | None = None,
    settings: ArtifactSettings | None = None,
) -> LatencyPredictor:
    """Measure the calibration files ``paths`` (built from ``specs``, of ``kind``) and fit the predictor on them."""
    kind = kind or PredictorKind()
    blocks = CHANNEL_BLOCKS if kind.artifact == "onnx" else (1,)  # channel padding is ONNX Runtime's NCHWc
    graphs = [{b: detect_file(p, channel_block=b) for b in blocks} for p in paths]
    # TensorRT builds each engine on the device: INT8 from the QDQ files, else at the target's float precision
    # (fp16 on a Jetson); the runner of ONNX Runtime / LiteRT targets ignores this
    floating = next((p for p in target.precisions if p != "int8"), "fp32")
    precisions: list[str | None] = [kind.precision if kind.precision == "int8" else floating] * len(paths)
    med, spread, device = measure_files(
        target, paths, repeats, runs=runs, on_progress=on_progress, clock=clock, precisions=precisions
    )
    device["calibration_files"] = {"kind": kind.key, **(settings or ArtifactSettings()).describe(kind)}
    rows = [
        {"name": f"calib{i:03d}", "spec": s, "p50_ms": m, "p50_spread": sp, "graphs": g}
        for i, (s, m, sp, g) in enumerate(zip(specs, med, spread, graphs, strict=True))
    ]
    return LatencyPredictor.from_measurements(rows, device, target=target.name, kind=kind)
