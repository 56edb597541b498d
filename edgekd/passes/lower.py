"""lower: export the student to ONNX, then parity-check every ONNX artifact against the PyTorch student.

Parity runs on held-out test images: fp32 artifacts must match within ``parity.atol`` (max abs
logit difference); quantized ones must keep ``min_top1`` % top-1 agreement and ``min_cosine``
logit cosine. A failure stops the compile (an export that silently changed the model is worse
than none). Each artifact's accuracy on the test split is measured in its own runtime.
"""

from __future__ import annotations

from pydantic import Field

from edgekd._version import __version__
from edgekd.backends.onnx_export import export_onnx
from edgekd.backends.parity import check_parity
from edgekd.config import Strict
from edgekd.evaluate import onnx_accuracy
from edgekd.pipeline import Context, Pass
from edgekd.registry import register_pass


class ParityConfig(Strict):
    samples: int = Field(default=256, ge=1, description="held-out test images compared")
    atol: float = Field(default=1e-4, gt=0, description="fp32: max abs logit difference")
    min_cosine: float = Field(default=0.99, gt=0, le=1, description="quantized: mean logit cosine")
    min_top1: float = Field(default=97.0, gt=0, le=100, description="quantized: top-1 agreement, percent")


class LowerConfig(Strict):
    opset: int = Field(default=17, ge=13, le=17, description="ONNX opset of the legacy exporter")
    dynamic_batch: bool = False
    parity: ParityConfig = Field(default_factory=ParityConfig)
    evaluate: bool = Field(default=True, description="measure each artifact's accuracy on the test split")


@register_pass
class Lower(Pass):
    name = "lower"
    Config = LowerConfig
    requires = frozenset({"student"})
    produces = frozenset({"lowered"})

    def run(self, ctx: Context) -> None:
        c: LowerConfig = self.config  # type: ignore[assignment]
        assert ctx.student is not None
        ctx.student.eval()
        x = ctx.data.test.x
        path = export_onnx(
            ctx.student, x[:1], ctx.run_dir / "student.onnx", opset=c.opset, dynamic_batch=c.dynamic_batch
        )
        ctx.add_artifact("onnx", path, "onnx", precision="fp32", backend="onnx")  # export_onnx writes atomically
        for backend in ctx.target.backends:
            if backend != "onnx":
                ctx.note(
                    f"{backend}: lowering to {backend} is not implemented in edgekd {__version__}; "
                    f"the ONNX artifacts are what this run produced for {ctx.target.name}"
                )
        held_out = x[: c.parity.samples]
        threads = ctx.target.runtime.threads
        results = {}
        for art in list(ctx.artifacts.values()):
            if art.kind != "onnx":
                continue
            exact = art.precision == "fp32"
            report = check_parity(
                ctx.student,
                ctx.path_of(art.name),
                held_out,
                mode="exact" if exact else "quantized",
                atol=c.parity.atol,
                min_cosine=c.parity.min_cosine,
                min_top1=c.parity.min_top1,
                threads=threads,
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
            if c.evaluate:
                art.info["accuracy"] = onnx_accuracy(ctx.path_of(art.name), x, ctx.data.test.y, threads)
                art.info["accuracy_where"] = f"ONNX Runtime on host, test split ({len(x)} images)"
            results[art.name] = {"parity": report.to_dict(), "accuracy": art.info.get("accuracy")}
            ctx.stages.append(
                {
                    "stage": "lower",
                    "model": f"{art.name} ({art.precision})",
                    "accuracy": art.info.get("accuracy"),
                    "bytes": art.bytes,
                    "measured": "ONNX Runtime on host, test split",
                }
            )
        ctx.metrics["lower"] = {"opset": c.opset, "dynamic_batch": c.dynamic_batch, "artifacts": results}
