"""quantize: INT8 post-training quantization of the student with calibration data (ONNX Runtime, static, QDQ).

The activation type follows the target (uint8 on x86 ONNX Runtime, where it was measured faster;
symmetric int8 for TensorRT and LiteRT). ``fp16`` is recorded for backends that apply it when they build.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from edgekd.backends.onnx_export import export_onnx
from edgekd.config import Strict
from edgekd.evaluate import onnx_accuracy
from edgekd.pipeline import Context, Pass
from edgekd.quant.ort_static import quantize_static_onnx
from edgekd.registry import register_pass


class QuantizeConfig(Strict):
    precision: Literal["int8", "fp16", "fp32"] = "int8"
    per_channel: bool | None = Field(default=None, description="default: the target's setting")
    activation_type: Literal["uint8", "int8"] | None = Field(default=None, description="default: the target's setting")
    opset: int = Field(default=17, ge=13, le=17)


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

    def run(self, ctx: Context) -> None:
        c: QuantizeConfig = self.config  # type: ignore[assignment]
        if c.precision == "fp32":
            ctx.metrics["quantize"] = {"precision": "fp32"}
            return
        if c.precision == "fp16":
            if "tensorrt" in ctx.target.backends:
                ctx.note("fp16: applied when the TensorRT engine is built (trtexec --fp16); the ONNX stays fp32")
            else:
                ctx.note(f"fp16: target {ctx.target.name} has no fp16 backend here; the student stays fp32")
            ctx.metrics["quantize"] = {"precision": "fp16"}
            return
        assert ctx.student is not None
        tq = ctx.target.quantization
        act = c.activation_type or tq.activation_type
        per_channel = tq.per_channel if c.per_channel is None else c.per_channel
        calib = ctx.data.calibration.x.numpy()
        method = ctx.config.calibration.method
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(ctx.student, ctx.data.calibration.x[:1], Path(tmp) / "student.fp32.onnx", opset=c.opset)
            with ctx.artifact("onnx_int8", "student.int8.onnx", "onnx", precision="int8", backend="onnx") as out:
                quantize_static_onnx(
                    fp32,
                    out,
                    calib,
                    activation_type=act,
                    weight_type=tq.weight_type,
                    per_channel=per_channel,
                    method=method,
                    quantize_bias=tq.quantize_bias,
                )
        art = ctx.artifacts["onnx_int8"]
        val_acc = onnx_accuracy(ctx.path_of("onnx_int8"), ctx.data.val.x, ctx.data.val.y, ctx.target.runtime.threads)
        art.info["quantization"] = {
            "format": "QDQ",
            "activations": act,
            "weights": tq.weight_type,
            "per_channel": per_channel,
            "bias": "int32 (quantized)" if tq.quantize_bias else "float (not quantized)",
            "calibration": {"samples": len(calib), "method": method},
        }
        ctx.metrics["quantize"] = {
            "precision": "int8",
            "activation_type": act,
            "per_channel": per_channel,
            "calibration_samples": len(calib),
            "calibration_method": method,
            "val_accuracy": val_acc,
        }
        ctx.stages.append(
            {
                "stage": "quantize",
                "model": f"student int8 QDQ ({act} activations)",
                "accuracy_val": val_acc,
                "bytes": art.bytes,
                "measured": "ONNX Runtime on host, val split",
            }
        )
