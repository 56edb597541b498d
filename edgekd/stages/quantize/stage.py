"""quantize: INT8 of the student (post-training, or quantization-aware with the teacher), per-layer fallback,
under the accuracy guard; or FP16.

```yaml
- quantize:
    precision: int8          # int8 | fp16 | fp32
    method: qat              # ptq: static calibration only; qat: fake-quantized KD from the teacher first
    qat: {epochs: 2, lr: 0.001}
    fallback: {accuracy: true, latency: model, max_layers: null}
```
INT8 is ONNX Runtime static QDQ with per-channel weights (QAT simulates the INT8 file of the target's first
backend); calibration samples and method come from ``calibration:``. The activation type follows the target
(uint8 on x86 ONNX Runtime, where it was measured faster; symmetric int8 for TensorRT and LiteRT). With
``constraints.max_accuracy_drop`` the layers whose quantization costs the most validation accuracy go back to
fp32 until the guard holds; if it cannot hold, the most accurate model is still saved and the pass fails
naming its accuracy. ``result.json`` lists the precision of every layer (``student.quantize.layers``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from edgekd.backends.base import BACKENDS, backend_for_runtime, int8_scheme, predict_in_chunks
from edgekd.backends.base import accuracy as artifact_accuracy
from edgekd.backends.onnx.lower import embed_preprocessing, export_onnx
from edgekd.backends.onnx.quantize import quantize_dynamic_onnx, quantize_static_onnx
from edgekd.backends.onnx.runtime import OrtModel
from edgekd.core.errors import ConfigError
from edgekd.core.progress import console
from edgekd.core.schema import Strict
from edgekd.document.model import Section
from edgekd.latency.for_target import measure_for_target, predicted_for
from edgekd.models.sparsity_2_4 import masks_kept, sparse_layers
from edgekd.models.text import is_text
from edgekd.pipeline.context import Context
from edgekd.pipeline.guard import guard_of
from edgekd.pipeline.stage import Pass, register_pass
from edgekd.stages.quantize.fallback import host_latency_ms, latency_fallback, match_layers, quantize_with_fallback
from edgekd.stages.quantize.qat import Simulation, calibrate, deployed_agreement, simulate, snap_weights
from edgekd.stages.quantize.report import quantize_sections
from edgekd.train.loop import accuracy, teacher_predictions
from edgekd.train.recovery import RecoveryConfig, recover, subset


class QATConfig(RecoveryConfig):
    epochs: int = Field(default=2, ge=1, description="fake-quantized KD epochs")
    lr: float = Field(default=0.001, gt=0)


class FallbackConfig(Strict):
    accuracy: bool = Field(default=True, description="return the most sensitive layers to fp32 until the guard holds")
    latency: Literal["off", "model", "per_layer"] = Field(
        default="model",
        description="model: compare INT8 with fp32 in the target's runtime (on this host when it is the target, "
        "on its device, or by its predictor) and say to ship fp32 when INT8 is slower (the INT8 file is still "
        "written); per_layer: also keep in fp32 the layers whose INT8 form is slower (only where this host is the "
        "target); where neither can be measured the report says it was not checked",
    )
    max_layers: int | None = Field(default=None, ge=0, description="at most this many layers back in fp32")


class QuantizeConfig(Strict):
    precision: Literal["int8", "fp16", "fp32"] = "int8"
    method: Literal["ptq", "qat", "dynamic"] = Field(
        default="ptq",
        description="ptq: static calibration; qat: fake-quantized KD from the teacher first; dynamic (text models): "
        "int8 weights, activations quantized at run time (ONNX Runtime quantize_dynamic)",
    )
    qat: QATConfig = Field(default_factory=QATConfig)
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    guard: bool = Field(default=True, description="respect constraints.max_accuracy_drop")
    per_channel: bool | None = Field(default=None, description="default: the target's setting")
    activation_type: Literal["uint8", "int8"] | None = Field(default=None, description="default: the target's setting")
    opset: int = Field(default=17, ge=13, le=17)
    seed: int | None = None


@register_pass
class Quantize(Pass):
    name = "quantize"
    Config = QuantizeConfig
    requires = frozenset({"student"})
    produces = frozenset({"quantized"})
    must_precede: ClassVar[dict[str, str]] = {
        "lowered": "lower exports and parity-checks every artifact; a quantized model made after it "
        "would escape that check"
    }
    changes_student = True  # QAT trains it (PTQ leaves it as it is)
    result_key = ("student", "quantize")

    @classmethod
    def report_sections(cls, result: dict[str, Any]) -> list[Section]:
        return quantize_sections(result.get("student", {}))

    def check(self, where: str, teacher: nn.Module, student: nn.Module | None) -> None:
        c: QuantizeConfig = self.config  # type: ignore[assignment]
        text = is_text(teacher)
        if c.precision == "int8" and c.method == "dynamic" and not text:
            raise ConfigError(
                f"{where}.method dynamic is for text models (MatMul-heavy transformers)",
                fix="use method ptq or qat for an image model",
            )
        if text and c.precision == "int8" and c.method == "qat":
            raise ConfigError(
                f"{where}.method qat is not available for text models yet",
                fix="use method dynamic (the usual CPU recipe for BERT-class models) or ptq (static QDQ)",
            )

    def run(self, ctx: Context) -> None:
        c: QuantizeConfig = self.config  # type: ignore[assignment]
        if c.precision == "int8" and ctx.data.is_text:
            self._text_int8(ctx)
            return
        if c.precision == "fp32":
            ctx.metrics["quantize"] = {"precision": "fp32"}
            return
        if c.precision == "fp16":
            self._fp16(ctx)
            return
        assert ctx.student is not None
        tq = ctx.target.quantization
        act = c.activation_type or tq.activation_type
        per_channel = tq.per_channel if c.per_channel is None else c.per_channel
        calib_x = ctx.data.calibration.x
        calib = calib_x.numpy()
        method = ctx.config.calibration.method
        guard = guard_of(ctx, c.guard)
        threads = ctx.target.runtime.threads
        shape = ctx.data.input_shape
        val = ctx.data.val
        metrics: dict[str, Any] = {"precision": "int8", "method": c.method}
        sim: Simulation | None = None
        if c.method == "qat":
            scheme_settings = tq.model_copy(update={"activation_type": act, "per_channel": per_channel})
            metrics["qat"], sim = self._qat(ctx, scheme_settings)
        quant_kwargs = {
            "activation_type": act,
            "weight_type": tq.weight_type,
            "per_channel": per_channel,
            "method": method,
            "quantize_bias": tq.quantize_bias,
        }

        def evaluate(path: Path) -> float:
            return artifact_accuracy(path, val.x, val.y, threads)

        def accept(acc: float) -> bool:
            return guard is None or not c.fallback.accuracy or guard.ok(acc)

        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(ctx.student, calib_x[:1], Path(tmp) / "student.fp32.onnx", opset=c.opset)
            int8 = Path(tmp) / "student.int8.onnx"
            layers = match_layers(fp32, ctx.student, calib_x[:1])
            result = quantize_with_fallback(
                fp32,
                int8,
                calib,
                evaluate,
                accept,
                layers,
                quant_kwargs,
                c.fallback.max_layers if c.fallback.accuracy else 0,
                log=lambda s: None if ctx.quiet else console.print(f"  {s}", markup=False),
            )
            latency: dict[str, Any] = {}
            if c.fallback.latency != "off":
                host_is_target = _host_runs_the_target(ctx)
                if c.fallback.latency == "per_layer":
                    if host_is_target:
                        latency_fallback(fp32, int8, calib, result, shape, threads, quant_kwargs, evaluate, accept)
                    else:
                        ctx.note(
                            f"quantize: per-layer latency fallback not run: {ctx.target.name} runs "
                            f"{ctx.target.runtime.name} on its device, and timings of this host's ONNX Runtime "
                            "would choose the layers for another runtime"
                        )
                latency = _latency_check(ctx, fp32, int8, shape, threads, host_is_target)
            with ctx.artifact("onnx_int8", "student.int8.onnx", "onnx", precision="int8", backend="onnx") as out:
                shutil.copyfile(int8, out)
                embed_preprocessing(out, ctx.data.preprocessing)
            if sim is not None:
                metrics["qat"]["deployed"] = _agreement(sim, int8, val.x, result.excluded, threads)
        art = ctx.artifacts["onnx_int8"]
        art.info["quantization"] = {
            "format": "QDQ",
            "activations": act,
            "weights": tq.weight_type,
            "per_channel": per_channel,
            "bias": "int32 (quantized)" if tq.quantize_bias else "float (not quantized)",
            "calibration": {"samples": len(calib), "method": method},
            "method": c.method,
            "fp32_layers": result.excluded,
        }
        if latency.get("checked") and latency["int8_ms"] > latency["fp32_ms"] * 1.05:
            ctx.note(
                f"quantize: INT8 is slower than fp32 ({latency['where']}: {latency['int8_ms']:.3f} ms vs "
                f"{latency['fp32_ms']:.3f} ms, batch 1); ship the fp32 student.onnx for {ctx.target.name}"
            )
            latency["int8_slower"] = True
        elif latency and not latency.get("checked"):
            ctx.note(f"quantize: INT8 vs fp32 latency not checked: {latency['why']}")
        metrics.update(
            {
                "activation_type": act,
                "per_channel": per_channel,
                "calibration_samples": len(calib),
                "calibration_method": method,
                "val_accuracy": result.accuracy,
                "val_accuracy_all_int8": result.int8_accuracy_all,
                "layers": [layer.to_dict() for layer in result.layers],
                "fallback_trials": result.trials,
                "latency_check": latency,
                "guard": None if guard is None else {"floor_val_accuracy": guard.floor, "max_drop": guard.max_drop},
            }
        )
        ctx.metrics["quantize"] = metrics
        n_fp32 = len(result.excluded)
        ctx.stages.append(
            {
                "stage": "quantize",
                "model": f"student int8 QDQ ({act} activations, {c.method}"
                + (f", {n_fp32} layer(s) fp32)" if n_fp32 else ")"),
                "accuracy_val": result.accuracy,
                "bytes": art.bytes,
                "artifact": "onnx_int8",
                "measured": "ONNX Runtime on host, val split",
            }
        )
        if guard is not None and c.fallback.accuracy and not guard.ok(result.accuracy):
            raise guard.failure(
                "quantize",
                result.accuracy,
                f"INT8 with {n_fp32} of {len(result.layers)} layers in fp32",
                ["student.int8.onnx"],
            )

    def _text_int8(self, ctx: Context) -> None:
        """INT8 of a text model: dynamic (int8 weights, run-time activation ranges) or static QDQ calibrated on
        the calibration texts; judged on the validation split like the image path (no per-layer fallback yet)."""
        c: QuantizeConfig = self.config  # type: ignore[assignment]
        assert ctx.student is not None
        tq = ctx.target.quantization
        act = c.activation_type or tq.activation_type
        per_channel = tq.per_channel if c.per_channel is None else c.per_channel
        calib_x, val, threads = ctx.data.calibration.x, ctx.data.val, ctx.target.runtime.threads
        guard = guard_of(ctx, c.guard)
        method = ctx.config.calibration.method
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(ctx.student, calib_x[:1], Path(tmp) / "student.fp32.onnx", opset=c.opset)
            int8 = Path(tmp) / "student.int8.onnx"
            if c.method == "dynamic":
                quantize_dynamic_onnx(fp32, int8, per_channel)
                how = {"format": "dynamic (QOperator MatMulInteger)", "activations": "uint8, ranges at run time"}
            else:
                quantize_static_onnx(
                    fp32, int8, calib_x.numpy(), act, tq.weight_type, per_channel, method,
                    quantize_bias=tq.quantize_bias,
                )  # fmt: skip
                how = {"format": "QDQ", "activations": act, "calibration": {"samples": len(calib_x), "method": method}}
            acc = artifact_accuracy(int8, val.x, val.y, threads)
            latency: dict[str, Any] = {}
            if c.fallback.latency != "off":
                latency = _latency_check(
                    ctx, fp32, int8, ctx.data.input_shape, threads, _host_runs_the_target(ctx), val.x[:1].numpy()
                )
            with ctx.artifact("onnx_int8", "student.int8.onnx", "onnx", precision="int8", backend="onnx") as out:
                shutil.copyfile(int8, out)
                embed_preprocessing(out, ctx.data.preprocessing)
        art = ctx.artifacts["onnx_int8"]
        art.info["quantization"] = {**how, "weights": "int8", "per_channel": per_channel, "method": c.method}
        if latency.get("checked") and latency["int8_ms"] > latency["fp32_ms"] * 1.05:
            ctx.note(
                f"quantize: INT8 is slower than fp32 ({latency['where']}: {latency['int8_ms']:.3f} ms vs "
                f"{latency['fp32_ms']:.3f} ms, batch 1); ship the fp32 student.onnx for {ctx.target.name}"
            )
            latency["int8_slower"] = True
        elif latency and not latency.get("checked"):
            ctx.note(f"quantize: INT8 vs fp32 latency not checked: {latency['why']}")
        ctx.metrics["quantize"] = {
            "precision": "int8",
            "method": c.method,
            **how,
            "per_channel": per_channel,
            "val_accuracy": acc,
            "latency_check": latency,
            "guard": None if guard is None else {"floor_val_accuracy": guard.floor, "max_drop": guard.max_drop},
        }
        ctx.stages.append(
            {
                "stage": "quantize",
                "model": f"student int8 ({c.method})",
                "accuracy_val": acc,
                "bytes": art.bytes,
                "artifact": "onnx_int8",
                "measured": "ONNX Runtime on host, val split",
            }
        )
        if guard is not None and not guard.ok(acc):
            raise guard.failure("quantize", acc, f"INT8 ({c.method})", ["student.int8.onnx"])

    def _qat(self, ctx: Context, quantization: Any) -> tuple[dict[str, Any], Simulation]:
        """Fake-quantized KD under the scheme of the target's first backend (the file it deploys)."""
        c: QuantizeConfig = self.config  # type: ignore[assignment]
        assert ctx.student is not None
        student, teacher = ctx.student, ctx.teacher
        seed = ctx.config.seed if c.seed is None else c.seed
        train = subset(ctx.data.train, c.qat.fraction, ctx.config.seed)
        teacher_logits = teacher_predictions(teacher, train.x, ctx.train_device)
        calib = ctx.data.calibration.x
        scheme = int8_scheme(ctx.target.backends[0], quantization, ctx.config.calibration.method)
        sim = simulate(student, calib[:2], scheme)
        sparse = sparse_layers(student)  # 2:4 layers (prune.sparsity_2_4) stay 2:4 through QAT
        with masks_kept(student, sparse, on=sim.module):
            calibrate(sim, calib)
            before = accuracy(sim.module, ctx.data.val)
            history = recover(
                sim.module,
                teacher,
                train,
                ctx.data.val,
                teacher_logits,
                c.qat,
                seed,
                ctx.progress("QAT (KD)"),
                lambda r: ctx.events.emit("epoch", pass_="quantize", **r),
                ctx.train_device,
                ctx.amp,
            )
        snap_weights(sim)
        calibrate(sim, calib)  # the ranges the deployed file's calibration finds on the snapped student
        after = accuracy(sim.module, ctx.data.val)
        student.eval()
        for note in scheme.differences:
            ctx.note(f"quantize qat: {note}")
        return {
            "epochs": c.qat.epochs,
            "lr": c.qat.lr,
            "loss": c.qat.loss,
            "simulates": scheme.runtime,
            "calibration": scheme.calibration,
            "layers_fake_quantized": len(sim.twins),
            "activations_fake_quantized": len(sim.quantizers),
            "batchnorm_folded": sim.folded,
            "float_ops": sim.float_ops,
            "sparse_2_4_layers": sorted(sparse),
            "val_accuracy_fake_quant_before": before,
            "val_accuracy_fake_quant_after": after,
            "best_epoch": history.best_epoch if history else None,
            "seconds": round(history.seconds, 1) if history else 0.0,
        }, sim

    def _fp16(self, ctx: Context) -> None:
        c: QuantizeConfig = self.config  # type: ignore[assignment]
        assert ctx.student is not None
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(ctx.student, ctx.data.calibration.x[:1], Path(tmp) / "s.onnx", opset=c.opset)
            half = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
            with ctx.artifact("onnx_fp16", "student.fp16.onnx", "onnx", precision="fp16", backend="onnx") as out:
                onnx.save(half, str(out))
                embed_preprocessing(out, ctx.data.preprocessing)
        acc = artifact_accuracy(ctx.path_of("onnx_fp16"), ctx.data.val.x, ctx.data.val.y, ctx.target.runtime.threads)
        if any(BACKENDS[b].fast_fp16 for b in ctx.target.backends):
            ctx.note("fp16: student.fp16.onnx written; TensorRT builds it with trtexec --fp16")
        else:
            ctx.note(f"fp16: target {ctx.target.name} prefers int8/fp32; student.fp16.onnx runs slower on CPUs")
        ctx.metrics["quantize"] = {"precision": "fp16", "val_accuracy": acc, "format": "fp16 weights, fp32 I/O"}
        ctx.stages.append(
            {
                "stage": "quantize",
                "model": "student fp16 ONNX",
                "accuracy_val": acc,
                "bytes": ctx.artifacts["onnx_fp16"].bytes,
                "artifact": "onnx_fp16",
                "measured": "ONNX Runtime on host, val split",
            }
        )


def _host_runs_the_target(ctx: Context) -> bool:
    """This host is the target and runs the QDQ file in the target's own runtime (ONNX Runtime)."""
    return ctx.target.is_host and backend_for_runtime(ctx.target.runtime.name).name == "onnx"


def _latency_check(
    ctx: Context, fp32: Path, int8: Path, shape: tuple[int, ...], threads: int | None, host_is_target: bool,
    sample: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """fp32 vs INT8 latency of the QDQ file in the target's own runtime: on this host when it is the target, on
    the target's SSH device when it runs ONNX Runtime there, else by the target's latency predictor; otherwise
    not checked (host ONNX Runtime timings say nothing of another runtime or device)."""
    t = ctx.target
    if host_is_target:
        return {
            "checked": True,
            "fp32_ms": host_latency_ms(fp32, shape, threads, sample=sample),
            "int8_ms": host_latency_ms(int8, shape, threads, sample=sample),
            "where": "ONNX Runtime on this host, the target",
            "source": "measured-host",
        }
    if t.device.kind == "ssh" and backend_for_runtime(t.runtime.name).name == "onnx":
        m = measure_for_target(t, [fp32, int8], t.timing(), ["fp32", "int8"], note=ctx.note)
        if m.on_target:
            fp, q = (s.p50_ms for s in m.stats)
            return {"checked": True, "fp32_ms": fp, "int8_ms": q, "where": m.where, "source": m.source}
    predicted = predicted_for(t, [fp32, int8], 0, ctx.note)
    if str(fp32) in predicted and str(int8) in predicted:
        return {
            "checked": True,
            "fp32_ms": predicted[str(fp32)]["p50_ms"],
            "int8_ms": predicted[str(int8)]["p50_ms"],
            "where": f"predicted for {t.name} ({predicted[str(int8)]['where']})",
            "source": "predicted",
        }
    if t.is_host:  # this host, but another runtime than ONNX Runtime: its INT8 files are the lower pass's
        return {
            "checked": False,
            "why": f"{t.name} runs {t.runtime.name} on this host, not the ONNX QDQ file this pass checks; its own "
            "INT8 files are written by the lower pass and timed against fp32 by the profile pass",
        }
    return {
        "checked": False,
        "why": f"{t.name} runs {t.runtime.name} on its device, which was not reached, and it has no latency "
        "predictor for these files; this host's ONNX Runtime timings would say nothing about it (give the target "
        "an SSH device or a predictor: edgekd profile --build-predictor)",
    }


def _agreement(
    sim: Simulation, int8: Path, x: torch.Tensor, fp32_layers: list[str], threads: int | None
) -> dict[str, Any]:
    """How well QAT's simulation predicted the INT8 file, on the validation images: against the file in ONNX
    Runtime as deployed (its fused integer kernels), and against the file's own QDQ graph run operator by
    operator (what its Q/DQ nodes specify)."""
    if fp32_layers:
        return {"compared": False, "why": f"{len(fp32_layers)} layer(s) went back to fp32 after QAT"}
    sim.module.eval()
    with torch.no_grad():
        simulated = torch.cat([sim.module(x[i : i + 256]) for i in range(0, len(x), 256)])
    deployed = torch.from_numpy(predict_in_chunks(OrtModel(int8, threads), x))
    graph = torch.from_numpy(predict_in_chunks(OrtModel(int8, threads, optimize=False), x))
    return {
        "compared": True,
        "split": "val",
        "vs_deployed": deployed_agreement(simulated, deployed),
        "vs_qdq_graph": deployed_agreement(simulated, graph),
    }
