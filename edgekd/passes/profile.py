"""profile: latency of every ONNX artifact (and of the teacher, side by side) in ONNX Runtime, batch 1.

Runs are interleaved in rounds in one subprocess, so the teacher and student share the machine's
noise and their ratio is fair. Every figure records where it was measured.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

from pydantic import Field

from edgekd.backends.onnx_export import export_onnx
from edgekd.config import Strict
from edgekd.errors import ProfilingError
from edgekd.pipeline import Artifact, Context, Pass
from edgekd.profiling.device import DeviceRun, measure_on_device
from edgekd.profiling.latency import measure
from edgekd.profiling.predictor import load_for_target
from edgekd.registry import register_pass


class ProfileConfig(Strict):
    warmup: int | None = Field(default=None, ge=0, description="default: the target's profile.warmup")
    runs: int | None = Field(default=None, ge=1, description="default: the target's profile.runs")
    rounds: int | None = Field(default=None, ge=1)
    threads: int | None = Field(default=None, ge=1, description="default: the target's runtime.threads")
    include_teacher: bool = Field(default=True, description="also measure the teacher fp32 for the speed-up ratio")
    per_layer: int = Field(default=5, ge=0, description="top-k slowest layers per model (0: no per-layer profile)")


@register_pass
class Profile(Pass):
    name = "profile"
    Config = ProfileConfig
    requires = frozenset({"lowered"})
    produces = frozenset({"profiled"})

    def run(self, ctx: Context) -> None:
        c: ProfileConfig = self.config  # type: ignore[assignment]
        tp = ctx.target.profile
        threads = c.threads or ctx.target.runtime.threads
        if c.include_teacher:
            path = export_onnx(ctx.teacher, ctx.data.test.x[:1], ctx.run_dir / "teacher.onnx")  # written atomically
            ctx.add_artifact("teacher_onnx", path, "onnx", precision="fp32", backend="onnx")
        arts = [a for a in ctx.artifacts.values() if a.kind in ("onnx", "tflite")]
        warmup = tp.warmup if c.warmup is None else c.warmup
        runs, rounds = c.runs or tp.runs, c.rounds or tp.rounds
        bar = ctx.progress("profile")
        total_runs = warmup * len(arts) + runs * len(arts)
        bar.start(f"{len(arts)} models", total_runs)
        done = 0

        def on_progress(n: int, total: int) -> None:
            nonlocal done
            n = round(n * total_runs / total) if total else n  # the device runner counts steps, not runs
            bar.advance(n - done)
            done = n

        device = _measure_on_device(ctx, arts, warmup, runs, rounds, threads, c.per_layer, on_progress)
        # host figures taken because the device could not be used are not cached: the next run tries the device again
        self.cache_result = device is not None or ctx.target.device.kind != "ssh"
        if device is not None:
            stats, where, measured_on_target = device.stats, device.where, True
        else:
            where, measured_on_target = self._host_where(ctx)
            stats = measure(
                [ctx.path_of(a.name) for a in arts],
                threads=threads,
                warmup=warmup,
                runs=runs,
                rounds=rounds,
                batch=tp.batch,
                on_progress=on_progress,
                per_layer=c.per_layer,
                tflite_delegate=str(ctx.target.runtime.options.get("delegate", "xnnpack")),
            )
        results = {}
        source = "measured-device" if device is not None else "measured-host"
        predicted = _predicted(ctx, arts, c.per_layer) if not measured_on_target else {}
        for art, s in zip(arts, stats, strict=True):
            d = s.to_dict()
            d.update({"where": where, "measured": True, "on_target": measured_on_target, "source": source})
            if art.name in predicted:
                d["predicted"] = predicted[art.name]
            art.info["latency"] = d
            results[art.name] = d
        bar.finish(**{f"{n}_p50_ms": r["p50_ms"] for n, r in results.items()})
        if "teacher_onnx" in results:
            t50 = results["teacher_onnx"]["p50_ms"]
            for r in results.values():
                r["speedup_vs_teacher"] = round(t50 / r["p50_ms"], 3) if r["p50_ms"] > 0 else None
        ctx.metrics["profile"] = {
            "threads": threads,
            "batch": tp.batch,
            "where": where,
            "source": source,
            "results": results,
        }
        if device is not None:
            ctx.metrics["profile"]["device"] = device.device

    @staticmethod
    def _host_where(ctx: Context) -> tuple[str, bool]:
        """Where host figures come from, and whether the host is the target; notes it when it is not."""
        runtimes = "ONNX Runtime" + (", LiteRT for .tflite" if "tflite" in ctx.target.backends else "")
        if ctx.target.is_host:
            return f"measured on host ({platform.machine()}, {runtimes})", True
        if ctx.target.device.kind != "ssh":  # an unusable SSH device was noted by _measure_on_device
            ctx.note(
                f"latency not measured on {ctx.target.name} (its runtime {ctx.target.runtime.name} runs on the "
                f"device, not here): the latencies shown were measured on this host ({runtimes}); give the "
                "target an SSH device (device.kind: ssh) or pass --device user@host to measure on the device"
            )
        return (
            f"measured on host ({platform.machine()}, {runtimes}) as a stand-in, not on {ctx.target.name}",
            False,
        )


def _predicted(ctx: Context, arts: list[Artifact], per_layer: int) -> dict[str, dict]:
    """Predicted latencies on the target (its latency predictor) for figures not measured there; notes a failure."""
    try:
        pred = load_for_target(ctx.target)
    except ProfilingError as exc:
        ctx.note(f"latency predictor of {ctx.target.name} not used: {exc.message}")
        return {}
    if pred is None:
        return {}
    out = {}
    for a in arts:
        try:
            out[a.name] = pred.predict(ctx.path_of(a.name), ctx.target.profile.batch).to_latency(per_layer or 5)
        except ProfilingError as exc:
            ctx.note(f"{a.path}: latency on {ctx.target.name} not predicted: {exc.message}")
    return out


def _measure_on_device(
    ctx: Context,
    arts: list[Artifact],
    warmup: int,
    runs: int,
    rounds: int,
    threads: int | None,
    per_layer: int,
    on_progress: Callable[[int, int], None],
) -> DeviceRun | None:
    """Latency on the target's SSH device (see edgekd.profiling.device); None means: measure on the host instead."""
    return measure_on_device(
        ctx.target,
        [ctx.path_of(a.name) for a in arts],
        warmup=warmup,
        runs=runs,
        rounds=rounds,
        threads=threads,
        batch=ctx.target.profile.batch,
        precisions=[a.precision for a in arts],
        per_layer=per_layer,
        on_progress=on_progress,
        note=ctx.note,
    )
