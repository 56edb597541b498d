"""profile: latency of every ONNX artifact (and of the teacher, side by side) in ONNX Runtime, batch 1.

Runs are interleaved in rounds in one subprocess, so the teacher and student share the machine's
noise and their ratio is fair. Every figure records where it was measured.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import Field

from edgekd.backends.base import runs_here
from edgekd.backends.onnx.lower import export_onnx
from edgekd.config.target import Timing
from edgekd.core.errors import ConfigError
from edgekd.core.schema import Strict
from edgekd.latency.for_target import TargetMeasurement, measure_for_target, predicted_for
from edgekd.models.count import count_macs, count_params
from edgekd.pipeline.context import Context
from edgekd.pipeline.stage import Pass, Produced, register_pass


class ProfileConfig(Strict):
    warmup: int | None = Field(default=None, ge=0, description="default: the target's profile.warmup")
    runs: int | None = Field(default=None, ge=1, description="default: the target's profile.runs")
    rounds: int | None = Field(default=None, ge=1)
    threads: int | None = Field(default=None, ge=1, description="default: the target's runtime.threads")
    include_teacher: bool = Field(default=True, description="also measure the teacher fp32 for the speed-up ratio")
    per_layer: int = Field(default=5, ge=0, description="top-k slowest layers per model (0: no per-layer profile)")
    sequence_lengths: list[int] | None = Field(
        default=None,
        description="text models: tokens per sample to measure at (default: 16, 64 and 128 up to data.max_length, "
        "and data.max_length); the headline figures are at the longest",
    )


def sequence_lengths(c: ProfileConfig, max_length: int) -> list[int]:
    """The lengths a text model is measured at, shortest first (none above ``max_length``)."""
    if c.sequence_lengths is not None:
        return sorted(set(c.sequence_lengths))
    return sorted({n for n in (16, 64, 128) if n < max_length} | {max_length})


@register_pass
class Profile(Pass):
    name = "profile"
    Config = ProfileConfig
    requires = frozenset({"lowered"})
    produces = frozenset({"profiled"})
    result_key = ("profile",)

    def run(self, ctx: Context) -> Produced:
        c: ProfileConfig = self.config  # type: ignore[assignment]
        timing = ctx.target.timing(c.warmup, c.runs, c.rounds, c.threads, c.per_layer)
        lengths: list[int | None] = [None]
        if ctx.data.is_text:
            max_length = int(ctx.data.input_shape[-1])
            lengths = list(sequence_lengths(c, max_length))
            if too_long := [n for n in lengths if not 1 <= n <= max_length]:
                raise ConfigError(
                    f"profile.sequence_lengths {too_long}: the model was compiled for at most {max_length} tokens "
                    "(data.max_length)",
                    fix=f"give lengths from 1 to {max_length}",
                )
        if c.include_teacher:
            path = export_onnx(ctx.teacher, ctx.data.test.x[:1], ctx.run_dir / "teacher.onnx")  # written atomically
            art = ctx.add_artifact("teacher_onnx", path, "onnx", precision="fp32", backend="onnx")
            art.info.update(params=count_params(ctx.teacher), macs=count_macs(ctx.teacher, ctx.data.input_shape))
        arts = [a for a in ctx.artifacts.values() if runs_here(ctx.path_of(a.name))]
        paths = [ctx.path_of(a.name) for a in arts]
        results: dict[str, dict] = {}
        by_length: dict[str, dict[str, dict]] = {}
        for length in lengths:  # the headline figures (results) are the last, longest one's
            at = dataclasses.replace(timing, seq_len=length)
            # a file with a fixed sequence length (LiteRT) is measured at its own length only
            here = [i for i, a in enumerate(arts) if a.info.get("sequence_length") in (None, length)]
            results, m = self._measure(
                ctx, [arts[i] for i in here], [paths[i] for i in here], at, c, f" at {length} tokens" if length else ""
            )
            if length is not None:
                keep = ("p50_ms", "p90_ms", "mean_ms")
                by_length[str(length)] = {n: {k: r[k] for k in keep} for n, r in results.items()}
        if "teacher_onnx" in results:
            t50 = results["teacher_onnx"]["p50_ms"]
            for r in results.values():
                r["speedup_vs_teacher"] = round(t50 / r["p50_ms"], 3) if r["p50_ms"] > 0 else None
        if by_length:
            for art in arts:
                art.info["latency_by_sequence_length"] = {n: d[art.name] for n, d in by_length.items() if art.name in d}
        ctx.metrics["profile"] = {
            **({"sequence_lengths": by_length, "sequence_length": lengths[-1]} if by_length else {}),
            "threads": timing.threads,
            "batch": timing.batch,
            "where": m.where,
            "source": m.source,
            "results": results,
        }
        if m.device is not None:
            ctx.metrics["profile"]["device"] = m.device
        ctx.metrics["environment"] = {
            "threads": timing.threads,
            "batch": timing.batch,
            "latency_device": m.where,
            "device": m.device,
        }
        # host figures taken because the device could not be used are not cached: the next run tries the device again
        return Produced(cacheable=m.device is not None or ctx.target.device.kind != "ssh")

    @staticmethod
    def _measure(
        ctx: Context, arts: list[Any], paths: list[Any], timing: Timing, c: ProfileConfig, label: str
    ) -> tuple[dict[str, dict], TargetMeasurement]:
        """Every artifact measured once, interleaved, with progress; each artifact's ``latency`` set."""
        bar = ctx.progress("profile")
        total_runs = (timing.warmup + timing.runs) * len(arts)
        bar.start(f"{len(arts)} models{label}", total_runs)
        done = 0

        def on_progress(n: int, total: int) -> None:
            nonlocal done
            n = round(n * total_runs / total) if total else n  # the device runner counts steps, not runs
            bar.advance(n - done)
            done = n

        m = measure_for_target(ctx.target, paths, timing, [a.precision for a in arts], on_progress, ctx.note)
        predicted = predicted_for(ctx.target, paths, c.per_layer, ctx.note) if not m.on_target else {}
        results = {}
        for art, path, s in zip(arts, paths, m.stats, strict=True):
            d = s.to_dict()
            d["measured"] = True
            if timing.seq_len:
                d["sequence_length"] = timing.seq_len
            if str(path) in predicted:
                d["predicted"] = predicted[str(path)]
            art.info["latency"] = d
            results[art.name] = d
        bar.finish(**{f"{n}_p50_ms": r["p50_ms"] for n, r in results.items()})
        return results, m
