"""prune: structured channel pruning with dependency groups, each step recovered by distillation, under the guard.

```yaml
- prune:
    ratio: 0.5            # share of channels removed from each prunable group (or over the model: scope global)
    importance: l2        # l1 | l2 | taylor | bn_scale
    scope: layer          # layer | global
    round_to: 8           # channel counts stay multiples of 8
    ignore: [fc]          # default: the classifier
    steps: 3              # prune a step -> KD fine-tune -> repeat
    until: {macs: 4.0e6, latency_ms: 0.08}   # stop as soon as one is reached (optional)
    recovery: {epochs: 2, lr: 0.01}          # KD from the teacher after every step
    sparsity_2_4: false   # then 2:4 masks for TensorRT (kept through a last recovery)
```
With ``constraints.max_accuracy_drop`` the schedule stops before a step that breaks it and keeps the most
pruned model that meets it. The pruned student is saved as ``student.pruned.safetensors`` (tensors only) plus
``student.pruned.json`` (arch, params and the pruned layer shapes): it reloads without torch-pruning.
"""

from __future__ import annotations

import copy
import json
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from edgekd.backends.base import BACKENDS
from edgekd.core.errors import ConfigError, PipelineError
from edgekd.core.progress import console
from edgekd.core.schema import Strict
from edgekd.document.model import Section
from edgekd.latency.search_latency import candidate_latency
from edgekd.models.count import count_macs, count_params
from edgekd.models.shapes import changed_shapes, layer_shapes
from edgekd.models.sparsity_2_4 import compute_masks, masks_kept
from edgekd.models.text import is_text
from edgekd.pipeline.context import Context
from edgekd.pipeline.guard import Guard, guard_of
from edgekd.pipeline.stage import Pass, register_pass
from edgekd.stages.prune.channels import ChannelPruner, default_ignored, find_layers
from edgekd.stages.prune.report import prune_sections
from edgekd.train.loop import accuracy, teacher_predictions
from edgekd.train.recovery import RecoveryConfig, recover, subset


class Until(Strict):
    macs: float | None = Field(default=None, gt=0, description="stop once the student has at most this many MACs")
    latency_ms: float | None = Field(
        default=None, gt=0, description="stop once the target's batch-1 p50 (measured here, or predicted) is this low"
    )


class PruneConfig(Strict):
    ratio: float = Field(default=0.5, gt=0, lt=1, description="share of channels removed when all steps ran")
    importance: Literal["l1", "l2", "taylor", "bn_scale"] = "l2"
    scope: Literal["layer", "global"] = "layer"
    round_to: int | None = Field(default=8, ge=1, description="channel counts stay multiples of this")
    ignore: list[str] | None = Field(default=None, description="layers never pruned (default: the classifier)")
    steps: int = Field(default=3, ge=1, le=50)
    until: Until = Field(default_factory=Until)
    recovery: RecoveryConfig = Field(default_factory=RecoveryConfig)
    guard: bool = Field(default=True, description="respect constraints.max_accuracy_drop")
    sparsity_2_4: bool = Field(default=False, description="2:4 semi-structured masks for TensorRT sparse cores")
    seed: int | None = None


def _describe(model: nn.Module, shape: tuple[int, ...]) -> dict[str, int]:
    return {"params": count_params(model), "macs": count_macs(model, shape)}


@register_pass
class Prune(Pass):
    name = "prune"
    Config = PruneConfig
    requires = frozenset({"teacher", "data", "student"})
    produces = frozenset({"pruned"})
    must_precede: ClassVar[dict[str, str]] = {
        "quantized": "pruning changes the fp32 student's channels; quantize the pruned student instead",
        "lowered": "pruning changes the PyTorch student, and lower has already exported it",
    }
    changes_student = True
    where = "passes[?].prune"
    result_key = ("student", "prune")

    @classmethod
    def report_sections(cls, result: dict[str, Any]) -> list[Section]:
        return prune_sections(result.get("student", {}))

    def check(self, where: str, teacher: nn.Module, student: nn.Module | None) -> None:
        self.where = where
        c: PruneConfig = self.config  # type: ignore[assignment]
        if is_text(teacher):
            raise ConfigError(
                f"{where}: channel pruning is for image models; text models are not pruned yet",
                fix="make a smaller text student with student.arch shrink (fewer layers, a narrower FFN) and remove "
                "the prune pass",
            )
        if student is not None and c.ignore:
            find_layers(student, c.ignore, f"{where}.ignore")

    def run(self, ctx: Context) -> None:
        c: PruneConfig = self.config  # type: ignore[assignment]
        assert ctx.student is not None and ctx.student_spec is not None
        student, teacher = ctx.student, ctx.teacher
        shape = ctx.data.input_shape
        seed = ctx.config.seed if c.seed is None else c.seed
        guard = guard_of(ctx, c.guard)
        latency = (
            candidate_latency(ctx.target, ctx.config.shipped_precision()) if c.until.latency_ms is not None else None
        )
        if latency is not None and latency.fn is None:
            raise PipelineError(
                f"{self.where}.until.latency_ms needs latency on {ctx.target.name}, which cannot be measured here "
                "and has no latency predictor",
                fix=f"build one (edgekd profile --build-predictor --target {ctx.target.name}), or stop on macs",
            )
        train, val = subset(ctx.data.train, c.recovery.fraction, ctx.config.seed), ctx.data.val
        ignore = c.ignore if c.ignore is not None else default_ignored(student)
        before_shapes = layer_shapes(student)
        teacher_logits = (
            teacher_predictions(teacher, train.x, ctx.train_device) if c.recovery.epochs else torch.empty(0)
        )

        def measure(model: nn.Module, step: int, ratio: float) -> dict[str, Any]:
            rec: dict[str, Any] = {"step": step, "ratio": round(ratio, 4), **_describe(model, shape)}
            rec["val_accuracy"] = accuracy(model, val)
            if latency is not None and latency.fn is not None:  # the search's method: runner or predictor
                rec["latency_ms"] = latency.fn(model, shape)
                rec["latency_source"] = latency.source
            rec["meets_guard"] = guard.ok(rec["val_accuracy"]) if guard else None
            return rec

        start = measure(student, 0, 0.0)
        history = [start]
        kept: tuple[nn.Module, dict[str, Any]] | None = None
        if start["meets_guard"] is not False:
            kept = (copy.deepcopy(student), start)
        best_any: tuple[nn.Module, dict[str, Any]] = (copy.deepcopy(student), start)
        stopped = "ratio reached"
        work = student
        pruner = ChannelPruner(
            work,
            train.x[:1],
            c.ratio,
            c.steps,
            c.importance,
            c.scope == "global",
            c.round_to,
            find_layers(work, ignore, f"{self.where}.ignore"),
        )
        g = torch.Generator().manual_seed(seed)

        def gradient_batch() -> torch.Tensor:  # Taylor importance: KD loss on 4 real batches
            idx = torch.randperm(len(train), generator=g)[:256]
            with torch.no_grad():
                if len(teacher_logits):
                    t = teacher_logits[idx.to(teacher_logits.device)].cpu()
                else:
                    t = teacher(train.x[idx])
            s = work(train.x[idx])
            return torch.nn.functional.kl_div(s.log_softmax(1), t.softmax(1), reduction="batchmean")

        for step in range(1, c.steps + 1):
            pruner.step(gradient_batch)
            ratio = c.ratio * step / c.steps
            recover(
                work,
                teacher,
                train,
                val,
                teacher_logits,
                c.recovery,
                seed + step,
                ctx.progress(f"prune step {step}/{c.steps}"),
                lambda r, s=step: ctx.events.emit("epoch", pass_="prune", step=s, **r),
                ctx.train_device,
                ctx.amp,
            )
            rec = measure(work, step, ratio)
            history.append(rec)
            ctx.events.emit("prune_step", **rec)
            if not ctx.quiet:
                console.print(
                    f"  prune step {step}/{c.steps}: ratio {ratio:.2f}, params {rec['params']}, "
                    f"MACs {rec['macs']}, val {rec['val_accuracy']:.2f}%",
                    markup=False,
                )
            if rec["val_accuracy"] > best_any[1]["val_accuracy"] or best_any[1]["step"] == 0:
                best_any = (copy.deepcopy(work), rec)
            if rec["meets_guard"] is False:
                stopped = f"accuracy guard at step {step} ({rec['val_accuracy']:.2f}% < {guard.floor:.2f}%)"  # type: ignore[union-attr]
                break
            kept = (copy.deepcopy(work), rec)
            if c.until.macs is not None and rec["macs"] <= c.until.macs:
                stopped = f"MACs target reached at step {step}"
                break
            if c.until.latency_ms is not None and rec["latency_ms"] <= c.until.latency_ms:
                stopped = f"latency target reached at step {step}"
                break

        metrics: dict[str, Any] = {
            "ratio": c.ratio,
            "importance": c.importance,
            "scope": c.scope,
            "round_to": c.round_to,
            "ignored": ignore,
            "steps_planned": c.steps,
            "recovery": c.recovery.model_dump(mode="json"),
            "history": history,
            "stopped": stopped,
            "guard": None if guard is None else {"floor_val_accuracy": guard.floor, "max_drop": guard.max_drop},
        }
        if kept is None:  # not even one step (nor the input) meets the guard: save the best and fail
            model, rec = best_any
            self._save(ctx, model, before_shapes, metrics, rec, None)
            assert guard is not None
            raise guard.failure(
                "prune",
                rec["val_accuracy"],
                f"step {rec['step']}, ratio {rec['ratio']}",
                ["student.pruned.safetensors", "student.pruned.json"],
            )
        model, rec = kept
        if rec["step"] < len(history) - 1 or rec["step"] < c.steps:
            if rec["step"] == 0:
                ctx.note(f"prune: stopped ({stopped}); the student is kept unpruned, the only model meeting the guard")
            elif "guard" in stopped:
                ctx.note(
                    f"prune: stopped ({stopped}); kept step {rec['step']} (ratio {rec['ratio']}), the most "
                    "pruned model that meets the guard"
                )
        masks: dict[str, torch.Tensor] = {}
        if c.sparsity_2_4:
            model, masks, rec = self._sparsify(ctx, model, rec, teacher_logits, guard, seed, metrics)
        self._save(ctx, model, before_shapes, metrics, rec, masks)

    def _sparsify(
        self,
        ctx: Context,
        model: nn.Module,
        rec: dict[str, Any],
        teacher_logits: torch.Tensor,
        guard: Guard | None,
        seed: int,
        metrics: dict[str, Any],
    ) -> tuple[nn.Module, dict[str, torch.Tensor], dict[str, Any]]:
        c: PruneConfig = self.config  # type: ignore[assignment]
        sparse = copy.deepcopy(model)
        masks = compute_masks(sparse, skip=set())
        with masks_kept(sparse, masks):
            recover(
                sparse,
                ctx.teacher,
                subset(ctx.data.train, c.recovery.fraction, ctx.config.seed),
                ctx.data.val,
                teacher_logits,
                c.recovery,
                seed + 1000,
                ctx.progress("2:4 recovery"),
                None,
                ctx.train_device,
                ctx.amp,
            )
        acc = accuracy(sparse, ctx.data.val)
        if not any(BACKENDS[b].sparse_2_4 for b in ctx.target.backends):
            ctx.note(
                f"prune.sparsity_2_4: target {ctx.target.name} has no TensorRT backend; 2:4 sparsity "
                "gives no speed there (the zeros are kept in the weights)"
            )
        metrics["sparsity_2_4"] = {"layers": sorted(masks), "val_accuracy": acc, "trtexec_flag": "--sparsity=enable"}
        if guard is not None and not guard.ok(acc):
            ctx.note(f"prune.sparsity_2_4: dropped, it broke the guard ({acc:.2f}% < {guard.floor:.2f}%)")
            metrics["sparsity_2_4"]["kept"] = False
            return model, {}, rec
        metrics["sparsity_2_4"]["kept"] = True
        return sparse, masks, {**rec, "val_accuracy": acc}

    def _save(
        self,
        ctx: Context,
        model: nn.Module,
        before: dict[str, list[int]],
        metrics: dict[str, Any],
        rec: dict[str, Any],
        masks: dict[str, torch.Tensor] | None,
    ) -> None:
        from safetensors.torch import save_file

        assert ctx.student_spec is not None
        model.eval()
        shapes = {**(ctx.student_spec.shapes or {}), **changed_shapes(before, layer_shapes(model))}
        spec = ctx.student_spec.model_copy(update={"shapes": shapes or None, "checkpoint": None})
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        with ctx.artifact("student_pruned", "student.pruned.safetensors", "safetensors", backend="pytorch") as tmp:
            save_file(state, str(tmp))
        description = {
            "format": "edgekd pruned student: build arch(params), resize the layers in shapes, load the safetensors",
            "arch": spec.arch,
            "params": spec.params,
            "shapes": shapes,
            "weights": "student.pruned.safetensors",
            "weights_sha256": ctx.artifacts["student_pruned"].sha256,
            "sparsity_2_4": sorted(masks) if masks else [],
        }
        with ctx.artifact("student_pruned_spec", "student.pruned.json", "json", backend="pytorch") as tmp:
            tmp.write_text(json.dumps(description, indent=2) + "\n")
        ctx.student, ctx.student_spec = model, spec
        test_acc = accuracy(model, ctx.data.test)
        metrics.update(
            {
                "kept_step": rec["step"],
                "kept_ratio": rec["ratio"],
                "val_accuracy": rec["val_accuracy"],
                "test_accuracy": test_acc,
                **_describe(model, ctx.data.input_shape),
            }
        )
        ctx.metrics["prune"] = metrics
        # the student as shipped from here on is the pruned one
        ctx.metrics.setdefault("student", {}).update(params=metrics["params"], macs=metrics["macs"])
        ctx.stages.append(
            {
                "stage": "prune",
                "model": f"student pruned (step {rec['step']}, channel ratio {rec['ratio']})",
                "accuracy": test_acc,
                "params": metrics["params"],
                "macs": metrics["macs"],
                "measured": "PyTorch on host, test split",
            }
        )
