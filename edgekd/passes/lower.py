"""lower: export the student to every backend the target names, then parity-check every artifact.

* ONNX (always): the legacy exporter for opset <= 17, the dynamo exporter for >= 18 (opset from ``lower.opset``,
  else the target's ``runtime.options.opset``, else 17), one file, optional dynamic batch, simplified (constant
  folding) unless ``simplify: false``.
* TFLite (``tflite`` backend): fp32, fp16 and full-integer INT8 ``.tflite`` converted from the PyTorch student
  (see :mod:`edgekd.backends.litert_export`), NHWC input/output unless the target or config says ``nchw``.
* TensorRT (``tensorrt`` backend): the TensorRT-ready ONNX (the QDQ INT8 from the quantize pass, sanitized and
  checked for what TensorRT's parser accepts) and ``build_engines.sh`` with the exact ``trtexec`` commands; the
  engines themselves are built here only where TensorRT imports and a GPU exists.

Parity runs on held-out test images: fp32 artifacts must match within ``parity.atol`` (max abs logit difference);
fp16 and quantized ones must keep ``min_top1`` % top-1 agreement and ``min_cosine`` logit cosine. A failure stops
the compile. Each artifact's accuracy on the test split is measured in its own runtime.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from edgekd.backends.onnx_export import LEGACY_MAX_OPSET, export_onnx
from edgekd.backends.onnx_simplify import simplify_onnx
from edgekd.backends.parity import ParityReport, check_parity
from edgekd.backends.runtimes import runtime_name
from edgekd.config import Strict, TargetConfig
from edgekd.errors import ConfigError
from edgekd.evaluate import artifact_accuracy
from edgekd.pipeline import Artifact, Context, Pass
from edgekd.registry import register_pass

PrecisionName = Literal["fp32", "fp16", "int8"]


class ParityConfig(Strict):
    samples: int = Field(default=256, ge=1, description="held-out test images compared")
    atol: float = Field(default=1e-4, gt=0, description="fp32: max abs logit difference")
    min_cosine: float = Field(default=0.99, gt=0, le=1, description="fp16/quantized: mean logit cosine")
    min_top1: float = Field(default=97.0, gt=0, le=100, description="fp16/quantized: top-1 agreement, percent")


class TfliteConfig(Strict):
    precisions: list[PrecisionName] | None = Field(
        default=None, description="default: fp32 plus the target's fp16/int8 precisions"
    )
    io_layout: Literal["nhwc", "nchw"] | None = Field(
        default=None, description="default: the target's runtime.options.io_layout, else nhwc"
    )
    int8_method: Literal["pt2e", "ai-edge-quantizer"] = "pt2e"
    per_channel: bool | None = Field(default=None, description="int8 weights per channel; default: the target's")
    delegate: Literal["xnnpack", "none"] | None = Field(
        default=None, description="default: the target's runtime.options.delegate, else xnnpack"
    )


class TensorrtConfig(Strict):
    precisions: list[PrecisionName] | None = Field(default=None, description="default: the target's precisions")
    sparsity: bool = Field(default=False, description="2:4 structured sparsity (--sparsity=enable / SPARSE_WEIGHTS)")
    build: Literal["auto", "never"] = Field(
        default="auto", description="auto: build engines where TensorRT imports and a GPU exists"
    )
    max_batch: int = Field(default=8, ge=1, description="largest batch of the optimisation profile (dynamic batch)")
    sanitize: bool = Field(default=True, description="polygraphy surgeon sanitize + run --onnxrt, when installed")


class LowerConfig(Strict):
    opset: int | None = Field(
        default=None, ge=13, le=21, description="ONNX opset (<= 17 legacy exporter, >= 18 dynamo); default: target's"
    )
    dynamic_batch: bool = False
    simplify: bool = Field(default=True, description="constant folding + dead-node removal, checked by parity")
    parity: ParityConfig = Field(default_factory=ParityConfig)
    evaluate: bool = Field(default=True, description="measure each artifact's accuracy on the test split")
    tflite: TfliteConfig = Field(default_factory=TfliteConfig)
    tensorrt: TensorrtConfig = Field(default_factory=TensorrtConfig)


def target_opset(c: LowerConfig, target: TargetConfig) -> int:
    return int(c.opset or target.runtime.options.get("opset", LEGACY_MAX_OPSET))


def tflite_precisions(c: LowerConfig, target: TargetConfig) -> list[str]:
    if c.tflite.precisions is not None:
        return list(dict.fromkeys(c.tflite.precisions))
    return ["fp32"] + [p for p in ("fp16", "int8") if p in target.precisions]


def tflite_delegate(c: LowerConfig, target: TargetConfig) -> str:
    return c.tflite.delegate or str(target.runtime.options.get("delegate", "xnnpack"))


@register_pass
class Lower(Pass):
    name = "lower"
    Config = LowerConfig
    requires = frozenset({"student"})
    produces = frozenset({"lowered"})

    def check_target(self, where: str, target: TargetConfig) -> None:
        """Before anything runs: the target's backends must be usable here (the TFLite converter is installed)."""
        c: LowerConfig = self.config  # type: ignore[assignment]
        if "tflite" in target.backends:
            from edgekd.backends.litert_export import import_litert_torch, import_quantizer
            from edgekd.backends.litert_runtime import import_interpreter

            import_litert_torch()
            import_interpreter()
            if set(tflite_precisions(c, target)) & {"fp16"} or c.tflite.int8_method == "ai-edge-quantizer":
                import_quantizer()
        opset = target_opset(c, target)
        if not 13 <= opset <= 21:
            raise ConfigError(
                f"{where}: target {target.name} asks for ONNX opset {opset} (runtime.options.opset)",
                fix="use an opset from 13 to 21 (set lower.opset in model.yaml)",
            )

    def run(self, ctx: Context) -> None:
        c: LowerConfig = self.config  # type: ignore[assignment]
        assert ctx.student is not None
        ctx.student.eval()
        x = ctx.data.test.x
        opset = target_opset(c, ctx.target)
        summary: dict[str, Any] = {"opset": opset, "exporter": "legacy" if opset <= LEGACY_MAX_OPSET else "dynamo"}
        summary["dynamic_batch"] = c.dynamic_batch
        self._onnx(ctx, c, opset, summary)
        if "tflite" in ctx.target.backends:
            self._tflite(ctx, c, summary)
        if "tensorrt" in ctx.target.backends:
            summary["tensorrt"] = self._tensorrt(ctx, c)
        held_out = x[: c.parity.samples]
        threads = ctx.target.runtime.threads
        delegate = tflite_delegate(c, ctx.target)
        results = {}
        for art in list(ctx.artifacts.values()):
            if art.kind not in ("onnx", "tflite"):
                continue
            report = self._parity(ctx, c, art, held_out, threads, delegate)
            runtime = runtime_name(ctx.path_of(art.name))
            if c.evaluate:
                art.info["accuracy"] = artifact_accuracy(ctx.path_of(art.name), x, ctx.data.test.y, threads, delegate)
                art.info["accuracy_where"] = f"{runtime} on host, test split ({len(x)} images)"
            results[art.name] = {"parity": report.to_dict(), "accuracy": art.info.get("accuracy")}
            ctx.stages.append(
                {
                    "stage": "lower",
                    "model": f"{art.name} ({art.precision})",
                    "accuracy": art.info.get("accuracy"),
                    "bytes": art.bytes,
                    "measured": f"{runtime} on host, test split",
                }
            )
        summary["artifacts"] = results
        ctx.metrics["lower"] = summary

    # ------------------------------------------------------------------ ONNX

    def _onnx(self, ctx: Context, c: LowerConfig, opset: int, summary: dict[str, Any]) -> None:
        assert ctx.student is not None
        final = ctx.run_dir / "student.onnx"
        example = ctx.data.test.x[:1]
        export_onnx(ctx.student, example, final, opset=opset, dynamic_batch=c.dynamic_batch)  # written atomically
        info = simplify_onnx(final, final) if c.simplify else None  # replaced atomically; parity checks the result
        art = ctx.add_artifact("onnx", final, "onnx", precision="fp32", backend="onnx")
        if info is None:
            return
        art.info["simplify"] = info
        summary["simplify"] = {k: info[k] for k in ("nodes_before", "nodes_after", "method")}

    # ------------------------------------------------------------------ TFLite

    def _tflite(self, ctx: Context, c: LowerConfig, summary: dict[str, Any]) -> None:
        from edgekd.backends.litert_export import convert_tflite
        from edgekd.backends.litert_runtime import op_summary

        assert ctx.student is not None
        layout = c.tflite.io_layout or str(ctx.target.runtime.options.get("io_layout", "nhwc"))
        per_channel = ctx.target.quantization.per_channel if c.tflite.per_channel is None else c.tflite.per_channel
        calib = ctx.data.calibration.x
        precisions = tflite_precisions(c, ctx.target)
        bar = ctx.progress("lower tflite")
        bar.start(f"{len(precisions)} TFLite files", len(precisions))
        for precision in precisions:
            path = convert_tflite(
                ctx.student,
                ctx.data.test.x[:1],
                ctx.run_dir / f"student.{precision}.tflite",
                precision=precision,
                layout=layout,
                calibration=calib if precision == "int8" else None,
                int8_method=c.tflite.int8_method,
                per_channel=per_channel,
            )  # written atomically
            art = ctx.add_artifact(f"tflite_{precision}", path, "tflite", precision=precision, backend="tflite")
            art.info["io_layout"] = layout
            art.info["graph"] = op_summary(path)
            if precision == "int8":
                art.info["quantization"] = {
                    "method": c.tflite.int8_method,
                    "weights": "int8 symmetric, " + ("per-channel" if per_channel else "per-tensor"),
                    "activations": "int8 (full-integer: int8 input and output)",
                    "calibration_samples": len(calib),
                }
            elif precision == "fp16":
                art.info["quantization"] = {"method": "ai-edge-quantizer float casting", "weights": "float16"}
            bar.advance(1)
        bar.finish()
        summary["tflite"] = {
            "precisions": precisions,
            "io_layout": layout,
            "int8_method": c.tflite.int8_method,
            "per_channel": per_channel,
            "delegate": tflite_delegate(c, ctx.target),
        }

    # ------------------------------------------------------------------ TensorRT

    def _tensorrt(self, ctx: Context, c: LowerConfig) -> dict[str, Any]:
        from edgekd.artifacts import atomic_write_bytes
        from edgekd.backends import tensorrt as trt

        t = c.tensorrt
        opts = ctx.target.runtime.options
        max_opset = int(opts.get("max_opset", trt.MAX_OPSET))
        precisions = list(dict.fromkeys(t.precisions or [p for p in ctx.target.precisions]))
        example = tuple(ctx.data.test.x[:1].shape)
        built, why_not = trt.tensorrt_status()
        build_here = built and t.build == "auto"
        sources: dict[str, str] = {}
        out: dict[str, Any] = {"precisions": precisions, "sparsity": t.sparsity, "checks": {}, "commands": {}}
        for precision in precisions:
            if precision == "int8":
                if "onnx_int8" not in ctx.artifacts:
                    ctx.note(
                        "tensorrt int8: no QDQ ONNX to build from (add a quantize pass with precision int8 before "
                        "lower); only the other precisions were prepared"
                    )
                    continue
                src = ctx.path_of("onnx_int8")
                trt.check_tensorrt_onnx(src, max_opset)  # names the node/layer TensorRT would refuse
                name = "student.int8.trt.onnx"
                dst = ctx.run_dir / name
                if t.sanitize and trt.polygraphy_binary() is not None:
                    out["polygraphy"] = trt.polygraphy_sanitize(src, dst)
                else:
                    atomic_write_bytes(dst, src.read_bytes())
                    ctx.note(
                        "tensorrt: polygraphy is not installed, so the QDQ ONNX was not sanitized or run through "
                        "polygraphy (pip install 'edgekd[trt]'); onnx.checker and edgekd's TensorRT checks passed"
                    )
                art = ctx.add_artifact("onnx_int8_trt", dst, "onnx", precision="int8", backend="tensorrt")
                art.info["tensorrt_ready"] = True
            else:
                name = ctx.artifacts["onnx"].path
            check = trt.check_tensorrt_onnx(ctx.run_dir / name, max_opset)
            out["checks"][precision] = check.to_dict() | {"path": name}
            sources[precision] = name
        commands = {
            p: trt.trtexec_command(
                src,
                f"student.{p}.engine",
                p,
                "input",
                example,
                opts,
                dynamic_batch=c.dynamic_batch,
                max_batch=t.max_batch,
                sparsity=t.sparsity,
                runs=ctx.target.profile.runs,
            )
            for p, src in sources.items()
        }
        out["commands"] = {p: " ".join(a) for p, a in commands.items()}
        note = f"engines built here with TensorRT {why_not}" if build_here else f"engines NOT built here: {why_not}"
        with ctx.artifact("trtexec", "build_engines.sh", "text", precision="fp32", backend="tensorrt") as tmp:
            tmp.write_bytes(trt.build_script(commands, note))
            tmp.chmod(0o755)
        out["engine_built"] = build_here
        if not build_here:
            out["why_not_built"] = why_not if t.build == "auto" else "lower.tensorrt.build is 'never'"
            ctx.note(
                f"TensorRT engine for {ctx.target.name} not built on this machine ({out['why_not_built']}). The "
                "TensorRT-ready ONNX and "
                "build_engines.sh (the exact trtexec commands) are in the run folder; the device profiler runs "
                "trtexec on the device"
            )
            return out
        cache = ctx.run_dir / "timing.cache"
        for precision, src in sources.items():
            engine = ctx.run_dir / f"student.{precision}.engine"
            info = trt.build_engine(
                ctx.run_dir / src,
                engine,
                precision,
                cache,
                workspace_mb=int(opts.get("workspace_mb", 1024)),
                sparsity=t.sparsity,
                dynamic_batch=c.dynamic_batch,
                max_batch=t.max_batch,
            )
            art = ctx.add_artifact(f"engine_{precision}", engine, "engine", precision=precision, backend="tensorrt")
            model = trt.TrtModel(engine)
            held_out = ctx.data.test.x[: c.parity.samples]
            report = check_parity(
                ctx.student,
                engine,
                held_out,
                mode="exact" if precision == "fp32" else "quantized",
                atol=c.parity.atol,
                min_cosine=c.parity.min_cosine,
                min_top1=c.parity.min_top1,
                predictor=model,
            )
            art.info.update(build=info, parity=report.to_dict())
            report.raise_if_failed()
            logits = model.predict(ctx.data.test.x.numpy())
            art.info["accuracy"] = float((logits.argmax(1) == ctx.data.test.y.numpy()).mean() * 100)
            times = sorted(model.latency_ms(ctx.data.test.x[:1].numpy(), runs=ctx.target.profile.runs))
            art.info["engine_latency"] = {"p50_ms": times[len(times) // 2], "where": "this machine's GPU (CUDA events)"}
        ctx.add_artifact("timing_cache", cache, "cache", precision="fp32", backend="tensorrt")
        return out

    # ------------------------------------------------------------------ parity

    @staticmethod
    def _parity(
        ctx: Context, c: LowerConfig, art: Artifact, held_out: Any, threads: int | None, delegate: str
    ) -> ParityReport:
        assert ctx.student is not None
        report = check_parity(
            ctx.student,
            ctx.path_of(art.name),
            held_out,
            mode="exact" if art.precision == "fp32" else "quantized",
            atol=c.parity.atol,
            min_cosine=c.parity.min_cosine,
            min_top1=c.parity.min_top1,
            threads=threads,
            delegate=delegate,
        )
        art.info["parity"] = report.to_dict()
        ctx.events.emit(
            "parity",
            artifact=art.name,
            passed=report.passed,
            max_abs_diff=report.max_abs_diff,
            top1_agreement=report.top1_agreement,
            cosine=report.cosine,
        )
        report.raise_if_failed()
        return report
