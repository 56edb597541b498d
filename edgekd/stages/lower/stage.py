"""lower: export the student to every backend the target names, then parity-check every artifact.

* ONNX (always): the legacy exporter for opset <= 17, the dynamo exporter for >= 18 (opset from ``lower.opset``,
  else the target's ``runtime.options.opset``, else 17), one file, optional dynamic batch, simplified (constant
  folding) unless ``simplify: false``.
* TFLite (``tflite`` backend): fp32, fp16 and full-integer INT8 ``.tflite`` converted from the PyTorch student
  (see :mod:`edgekd.backends.tflite.lower`), NHWC input/output unless the target or config says ``nchw``.
* TensorRT (``tensorrt`` backend): the TensorRT-ready ONNX (the QDQ INT8 from the quantize pass, sanitized and
  checked for what TensorRT's parser accepts) and ``build_engines.sh`` with the exact ``trtexec`` commands; the
  engines themselves are built here only where TensorRT imports and a GPU exists.

Parity runs on held-out test images: fp32 artifacts must match within ``parity.atol`` (max abs logit difference);
fp16 and quantized ones must keep ``min_top1`` % top-1 agreement and ``min_cosine`` logit cosine. A failure stops
the compile. ``parity.per_artifact`` sets other thresholds for some artifacts, keyed by precision or file name::

    parity: {min_cosine: 0.99, per_artifact: {int8: {min_top1: 90}, student.fp16.tflite: {min_cosine: 0.995}}}

Each artifact's accuracy on the test split is measured in its own runtime.
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import Field, field_validator
from torch import nn

from edgekd.backends.base import BACKENDS, MODEL_KINDS, accuracy, load_function, runs_here, runtime_name
from edgekd.backends.onnx.lower import LEGACY_MAX_OPSET
from edgekd.backends.parity import ParityReport, check_parity
from edgekd.backends.tensorrt.lower import TensorrtConfig
from edgekd.backends.tflite.lower import TfliteConfig, tflite_delegate
from edgekd.config.target import Precision, TargetConfig
from edgekd.core.errors import ConfigError, ModelError
from edgekd.core.schema import Strict, did_you_mean
from edgekd.document.model import Section
from edgekd.models.count import count_macs, count_params
from edgekd.models.text import is_text
from edgekd.pipeline.context import Artifact, Context
from edgekd.pipeline.stage import Pass, register_pass
from edgekd.stages.lower.report import lower_sections

PRECISIONS: tuple[str, ...] = get_args(Precision)
#: file suffixes of the deployable models a ``parity.per_artifact`` key may name
MODEL_SUFFIXES = tuple(s for b in BACKENDS.values() for s in b.suffixes)


class ParityThresholds(Strict):
    """Parity thresholds of some artifacts; one left out is the global one (``lower.parity``)."""

    atol: float | None = Field(default=None, gt=0, description="fp32: max abs logit difference")
    min_cosine: float | None = Field(default=None, gt=0, le=1, description="fp16/quantized: mean logit cosine")
    min_top1: float | None = Field(default=None, gt=0, le=100, description="fp16/quantized: top-1 agreement, %")


class ParityConfig(Strict):
    samples: int = Field(default=256, ge=1, description="held-out test images compared")
    atol: float = Field(default=1e-4, gt=0, description="fp32: max abs logit difference")
    min_cosine: float = Field(default=0.99, gt=0, le=1, description="fp16/quantized: mean logit cosine")
    min_top1: float = Field(default=97.0, gt=0, le=100, description="fp16/quantized: top-1 agreement, percent")
    per_artifact: dict[str, ParityThresholds] = Field(
        default_factory=dict,
        description="thresholds of some artifacts, keyed by precision (fp32, fp16, int8) or file name "
        "(student.int8.tflite); a file's own key wins over its precision's, which wins over the global ones",
    )

    @field_validator("per_artifact")
    @classmethod
    def _known_keys(cls, value: dict[str, ParityThresholds]) -> dict[str, ParityThresholds]:
        for key in value:
            if key in PRECISIONS or (key.endswith(MODEL_SUFFIXES) and "/" not in key and "\\" not in key):
                continue
            raise ValueError(
                f"unknown key {key!r}{did_you_mean(key, list(PRECISIONS))}: a key is a precision "
                f"({', '.join(PRECISIONS)}) or an artifact's file name ending in {', '.join(MODEL_SUFFIXES)} "
                "(e.g. student.int8.tflite)"
            )
        return value

    def for_artifact(self, file_name: str, precision: str) -> dict[str, float]:
        """The thresholds (``atol``, ``min_cosine``, ``min_top1``) for the artifact file ``file_name``."""
        out = {"atol": self.atol, "min_cosine": self.min_cosine, "min_top1": self.min_top1}
        for key in (precision, file_name):  # the file's own thresholds override its precision's
            if (own := self.per_artifact.get(key)) is not None:
                out.update(own.model_dump(exclude_none=True))
        return out

    def unknown_files(self, file_names: set[str]) -> list[str]:
        """The file-name keys of ``per_artifact`` that name none of ``file_names`` (a misspelled key would
        otherwise leave its artifact on the global thresholds without a word)."""
        return [k for k in self.per_artifact if k not in PRECISIONS and k not in file_names]


class LowerConfig(Strict):
    opset: int | None = Field(
        default=None, ge=13, le=21, description="ONNX opset (<= 17 legacy exporter, >= 18 dynamo); default: target's"
    )
    dynamic_batch: bool = False
    simplify: bool = Field(default=True, description="constant folding + dead-node removal, checked by parity")
    parity: ParityConfig = Field(default_factory=ParityConfig)
    evaluate: bool = Field(default=True, description="measure each artifact's accuracy on the test split")
    refuse_chance: bool = Field(
        default=True,
        description="stop when the student's validation accuracy is at chance while the teacher's is well above it",
    )
    tflite: TfliteConfig = Field(default_factory=TfliteConfig)
    tensorrt: TensorrtConfig = Field(default_factory=TensorrtConfig)


def target_opset(c: LowerConfig, target: TargetConfig) -> int:
    return int(c.opset or target.runtime.options.get("opset", LEGACY_MAX_OPSET))


@register_pass
class Lower(Pass):
    name = "lower"
    Config = LowerConfig
    requires = frozenset({"student"})
    produces = frozenset({"lowered"})
    result_key = ("lower",)

    @classmethod
    def report_sections(cls, result: dict[str, Any]) -> list[Section]:
        return lower_sections(result.get("lower") or {})

    def check(self, where: str, teacher: nn.Module, student: nn.Module | None) -> None:
        self._text = is_text(teacher)  # read by check_target, which the compiler calls next

    def check_target(self, where: str, target: TargetConfig) -> None:
        """Before anything runs: the target's backends must be usable here (the TFLite converter is installed)."""
        c: LowerConfig = self.config  # type: ignore[assignment]
        others = [b for b in target.backends if b not in ("onnx", "tflite")]
        if getattr(self, "_text", False) and others:
            raise ConfigError(
                f"{where}: target {target.name} ships {', '.join(others)}, which edgekd does not lower text models to "
                "yet (ONNX and TFLite only)",
                fix="compile text models for an ONNX Runtime or LiteRT target (x86-cpu, raspberry-pi-4), or a copy "
                "of your target with backends: [onnx]",
            )
        for name in target.backends:
            if (check := BACKENDS[name].check) is not None:
                load_function(check)(c, target)
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
        if c.refuse_chance:
            _refuse_at_chance(ctx)
        backends = list(dict.fromkeys(["onnx", *ctx.target.backends]))  # ONNX always, first: the others build on it
        for name in backends:
            BACKENDS[name].lower_fn()(ctx, c, summary)
        if ctx.data.is_text:
            summary["tokenizer"] = [a.path for a in ctx.add_tokenizer()]
            summary["inputs"] = ctx.data.preprocessing.get("inputs")
        files = {ctx.path_of(a.name).name for a in ctx.artifacts.values() if a.kind in MODEL_KINDS}
        if unknown := c.parity.unknown_files(files):
            raise ConfigError(
                f"lower.parity.per_artifact: {', '.join(map(repr, unknown))} names no artifact of this run",
                fix=f"key it by precision ({', '.join(PRECISIONS)}) or by one of: {', '.join(sorted(files))}",
            )
        held_out = x[: c.parity.samples]
        _refuse_collapsed(ctx.student, held_out)
        threads = ctx.target.runtime.threads
        delegate = tflite_delegate(c, ctx.target)
        results = {}
        size = {"params": count_params(ctx.student), "macs": count_macs(ctx.student, ctx.data.input_shape)}
        for art in ctx.artifacts.values():  # every model so far was exported from this student (pruned or not)
            if art.kind in MODEL_KINDS:
                art.info.update(size)
        for art in list(ctx.artifacts.values()):
            if not runs_here(ctx.path_of(art.name)):  # engines are checked where they are built
                continue
            report = self._parity(ctx, c, art, held_out, threads, delegate)
            runtime = runtime_name(ctx.path_of(art.name))
            if c.evaluate:
                art.info["accuracy"] = accuracy(ctx.path_of(art.name), x, ctx.data.test.y, threads, delegate)
                art.info["accuracy_where"] = f"{runtime} on host, test split ({len(x)} images)"
                if len(ctx.data.val):  # what constraints.max_accuracy_drop is judged on (never the test split)
                    val = ctx.data.val
                    art.info["accuracy_val"] = accuracy(ctx.path_of(art.name), val.x, val.y, threads, delegate)
            results[art.name] = {"parity": report.to_dict(), "accuracy": art.info.get("accuracy")}
            ctx.stages.append(
                {
                    "stage": "lower",
                    "model": f"{art.name} ({art.precision})",
                    "accuracy": art.info.get("accuracy"),
                    "bytes": art.bytes,
                    "artifact": art.name,
                    "measured": f"{runtime} on host, test split",
                }
            )
        summary["artifacts"] = results
        ctx.metrics["lower"] = summary

    # ------------------------------------------------------------------ parity

    @staticmethod
    def _parity(
        ctx: Context, c: LowerConfig, art: Artifact, held_out: Any, threads: int | None, delegate: str
    ) -> ParityReport:
        assert ctx.student is not None
        path = ctx.path_of(art.name)
        report = check_parity(
            ctx.student,
            path,
            held_out,
            mode="exact" if art.precision == "fp32" else "quantized",
            **c.parity.for_artifact(path.name, art.precision),
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


def _refuse_at_chance(ctx: Context) -> None:
    """A student no better than guessing, under a teacher that is far better (3x chance or more): it learned
    nothing (labels that do not match the images, a broken normalisation, too little training); its files would
    pass parity and be called deployable."""
    from edgekd.train.loop import accuracy as torch_accuracy

    assert ctx.student is not None
    teacher_val = ctx.metrics.get("teacher", {}).get("val_accuracy")
    chance = 100.0 / ctx.data.num_classes
    if not len(ctx.data.val) or teacher_val is None or not teacher_val >= 3 * chance:
        return
    student_val = torch_accuracy(ctx.student, ctx.data.val)
    if student_val <= 1.5 * chance:
        raise ModelError(
            f"the student's validation accuracy is {student_val:.2f}%, chance level for {ctx.data.num_classes} "
            f"classes ({chance:.2f}%), while the teacher's is {teacher_val:.2f}%: it has not learned the task and "
            "is not deployable",
            fix="train it longer (distill.epochs) or check data.labels / data.normalize; lower.refuse_chance: false "
            "exports it anyway",
        )


def _refuse_collapsed(student: Any, x: Any) -> None:
    """A student that gives the same logits for every input has collapsed (a broken initialisation, dead units,
    a diverged training): its files would pass parity (they match it exactly) and be called deployable."""
    import torch

    if len(x) < 2:
        return
    student.eval()
    with torch.no_grad():
        out = student(x[: min(len(x), 64)])
    spread = float((out - out[:1]).abs().max())
    if spread < 1e-6 * max(1.0, float(out.abs().max())):
        raise ModelError(
            f"the student gives the same logits for every input (largest difference between {len(out)} test "
            f"images: {spread:.2e}): it has collapsed and is not deployable",
            fix="check the student's initialisation (init: inherit), learning rate and data normalisation; "
            "distill it again",
        )
