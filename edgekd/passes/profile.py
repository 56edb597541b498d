"""profile: latency of every ONNX artifact (and of the teacher, side by side) in ONNX Runtime, batch 1.

Runs are interleaved in rounds in one subprocess, so the teacher and student share the machine's
noise and their ratio is fair. Every figure records where it was measured.
"""

from __future__ import annotations

import platform

from pydantic import Field

from edgekd.backends.onnx_export import export_onnx
from edgekd.config import Strict
from edgekd.pipeline import Context, Pass
from edgekd.profiling.latency import measure
from edgekd.registry import register_pass


class ProfileConfig(Strict):
    warmup: int | None = Field(default=None, ge=0, description="default: the target's profile.warmup")
    runs: int | None = Field(default=None, ge=1, description="default: the target's profile.runs")
    rounds: int | None = Field(default=None, ge=1)
    threads: int | None = Field(default=None, ge=1, description="default: the target's runtime.threads")
    include_teacher: bool = Field(default=True, description="also measure the teacher fp32 for the speed-up ratio")


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
        arts = [a for a in ctx.artifacts.values() if a.kind == "onnx"]
        if ctx.target.is_host:
            where = f"measured on host ({platform.machine()}, ONNX Runtime)"
            measured_on_target = True
        else:
            where = f"measured on host ({platform.machine()}, ONNX Runtime) as a stand-in, not on {ctx.target.name}"
            measured_on_target = False
            ctx.note(
                f"latency not measured on {ctx.target.name} ({ctx.target.device.kind} device "
                f"{ctx.target.device.host or ''}, runtime {ctx.target.runtime.name}): this edgekd version "
                "does not reach devices yet; the latencies shown were measured on this host with ONNX Runtime"
            )
        bar = ctx.progress("profile")
        total_runs = (tp.warmup if c.warmup is None else c.warmup) * len(arts) + (c.runs or tp.runs) * len(arts)
        bar.start(f"{len(arts)} models", total_runs)
        done = 0

        def on_progress(n: int, _total: int) -> None:
            nonlocal done
            bar.advance(n - done)
            done = n

        stats = measure(
            [ctx.path_of(a.name) for a in arts],
            threads=threads,
            warmup=tp.warmup if c.warmup is None else c.warmup,
            runs=c.runs or tp.runs,
            rounds=c.rounds or tp.rounds,
            batch=tp.batch,
            on_progress=on_progress,
        )
        results = {}
        for art, s in zip(arts, stats, strict=True):
            d = s.to_dict()
            d.update({"where": where, "measured": True, "on_target": measured_on_target})
            art.info["latency"] = d
            results[art.name] = d
        bar.finish(**{f"{n}_p50_ms": r["p50_ms"] for n, r in results.items()})
        if "teacher_onnx" in results:
            t50 = results["teacher_onnx"]["p50_ms"]
            for r in results.values():
                r["speedup_vs_teacher"] = round(t50 / r["p50_ms"], 3) if r["p50_ms"] > 0 else None
        ctx.metrics["profile"] = {"threads": threads, "batch": tp.batch, "where": where, "results": results}
