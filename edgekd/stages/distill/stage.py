"""distill: train the student from the teacher with a weighted sum of named loss terms.

```yaml
- distill:
    epochs: 30
    optimizer: {lr: 0.05, momentum: 0.9, weight_decay: 5.0e-4}
    schedule: cosine
    loss:
      ce: 1.0
      kd: {weight: 0.9, temperature: 4}
      fitnet: {weight: 100, pairs: [{student: layer2, teacher: layer3}]}
```
Terms: see :mod:`edgekd.train.losses` (ce, kd, dkd, dist, sinkhorn, fitnet, at, sp, rkd,
diswot_semantic, diswot_relation, minilm, hidden). Layer names are module paths, checked before anything runs.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from edgekd.core.device import describe
from edgekd.core.errors import ConfigError
from edgekd.core.schema import Strict, did_you_mean
from edgekd.data.dataset import DataBundle
from edgekd.document.model import Section
from edgekd.models.count import count_macs, count_params
from edgekd.pipeline.context import Context
from edgekd.pipeline.stage import Pass, register_pass
from edgekd.stages.distill.report import distill_sections
from edgekd.train.distributed import Nodes, fit_distributed
from edgekd.train.inherit import inherit
from edgekd.train.loop import TrainSettings, accuracy
from edgekd.train.loss_config import validate_loss
from edgekd.train.losses import TERMS, Term
from edgekd.train.objective import Recipe, fit
from edgekd.train.pairing import attention_heads, check_layer, projections
from edgekd.train.recovery import subset


class Optimizer(Strict):
    name: Literal["sgd", "adamw"] = Field(default="sgd", description="adamw: the usual choice for transformers")
    lr: float = Field(default=0.1, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1, description="sgd only")
    weight_decay: float = Field(default=5e-4, ge=0)


class RandAugment(Strict):
    ops: int = Field(default=2, ge=1, le=5, description="operations per image")
    magnitude: int = Field(default=9, ge=0, le=10)


class Augment(Strict):
    """Training augmentation (``augment: true`` is these defaults; ``false``: none)."""

    crop: Literal["auto", "pad", "resized", "none"] = Field(
        default="auto",
        description="pad: reflect-pad by `pad` and crop back; resized: random-resized crop (area share in `scale`, "
        "aspect 3/4..4/3); auto: pad under 64 pixels, resized from 64",
    )
    pad: int = Field(default=2, ge=0)
    scale: tuple[float, float] = Field(default=(0.08, 1.0))
    flip: bool = True
    randaugment: RandAugment | None = Field(default=None, description="RandAugment's geometric and contrast ops")

    @model_validator(mode="after")
    def _scale(self) -> Augment:
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale {list(self.scale)}: need 0 < min <= max <= 1")
        return self

    def settings(self, input_size: int) -> dict[str, Any]:
        crop = self.crop if self.crop != "auto" else ("resized" if input_size >= 64 else "pad")
        ra = (self.randaugment.ops, self.randaugment.magnitude) if self.randaugment else None
        return {"crop": crop, "crop_pad": self.pad, "scale": tuple(self.scale), "flip": self.flip, "randaugment": ra}


class TokenAugment(Strict):
    """Text augmentation (token inputs): each real token of a training text is replaced by the tokenizer's mask
    token with probability ``mask``, drawn anew every epoch, and the student learns the teacher's answer on the
    masked copy (Tang et al. 2019). Special tokens and padding are never masked."""

    mask: float = Field(default=0.1, gt=0, lt=1, description="share of the tokens replaced by the mask token")


class DistillConfig(Strict):
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=128, ge=1)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    schedule: Literal["onecycle", "cosine", "linear", "constant"] = Field(
        default="onecycle", description="linear: 10% warm-up, then linear decay to zero (BERT fine-tuning)"
    )
    loss: dict[str, Any] = Field(
        default_factory=lambda: {"ce": 0.1, "kd": {"weight": 0.9, "temperature": 4.0}}, validate_default=True
    )
    init: Literal["random", "inherit"] = Field(
        default="random", description="inherit: copy teacher weights where shapes allow"
    )
    labels: Literal["given", "teacher"] | None = Field(
        default=None, description="teacher: train on the teacher's argmax (default: data.labels)"
    )
    fraction: float | None = Field(
        default=None, gt=0, le=1, description="random share of the training split used (default: data.fraction)"
    )
    augment: bool | Augment | TokenAugment = Field(
        default=True,
        description="images: true is the default augmentation (see Augment), false none, or its settings; "
        "text: {mask: share} masks tokens (TokenAugment), anything else is no augmentation",
    )
    early_stop: int | None = Field(default=None, ge=1, description="patience in epochs on validation accuracy")
    nproc: int = Field(
        default=1,
        ge=1,
        le=64,
        description="data-parallel processes on this machine (DDP: one GPU each with nccl, or CPU processes with gloo)",
    )
    nnodes: int = Field(
        default=1, ge=1, description="machines training together (torchrun --nnodes); each runs this compile"
    )
    node_rank: int = Field(
        default=0, ge=0, description="this machine's index, 0 ... nnodes-1 (node 0 hosts the rendezvous)"
    )
    rdzv_endpoint: str | None = Field(
        default=None, pattern=r"^[^:\s]+:\d+$", description="host:port on node 0 that every node reaches (nnodes > 1)"
    )
    seed: int | None = None
    threads: int | None = Field(default=None, ge=1)

    def recipe(
        self, seed: int, labels: str, device: str = "cpu", amp: str | None = None, input_size: int = 28,
        text: bool = False, token_ids: tuple[int, tuple[int, ...], int, int] | None = None,
    ) -> Recipe:  # fmt: skip
        """The training recipe these settings describe, with the compile's ``seed``, the resolved ``labels`` and
        where it trains (``device``, ``amp``). Text (token inputs) is augmented only by token masking
        (``augment: {mask: share}``), which needs ``token_ids`` (mask id, ids never masked, input_ids row,
        attention mask row or -1)."""
        if isinstance(self.augment, TokenAugment) and not text:
            raise ConfigError(
                f"distill.augment.mask ({self.augment.mask}) masks tokens, and this data is images",
                fix="give image settings (crop, flip, randaugment) or true/false",
            )
        masking = self.augment.mask if text and isinstance(self.augment, TokenAugment) else 0.0
        if masking and token_ids is None:
            raise ConfigError(
                "distill.augment.mask: the teacher's tokenizer has no mask token to replace tokens with",
                fix="remove distill.augment.mask, or use a tokenizer with a mask token ([MASK])",
            )
        image = None if text else Augment() if self.augment is True else self.augment or None
        assert not isinstance(image, TokenAugment)
        augmented = image is not None or masking > 0
        return Recipe(
            loss=self.loss,
            labels=labels,
            augment=augmented,
            settings=TrainSettings(
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.optimizer.lr,
                optimizer=self.optimizer.name,
                momentum=self.optimizer.momentum,
                weight_decay=self.optimizer.weight_decay,
                schedule=self.schedule,
                augment=augmented,
                **(image.settings(input_size) if image is not None else {}),
                token_mask=masking,
                token_ids=token_ids if masking else None,
                seed=seed,
                threads=self.threads,
                patience=self.early_stop,
                device=device,
                amp=amp,
            ),
        )

    @model_validator(mode="after")
    def _nodes(self) -> DistillConfig:
        if self.nnodes > 1 and self.rdzv_endpoint is None:
            raise ValueError("nnodes > 1 needs rdzv_endpoint: host:port of node 0 (reachable from every node)")
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} must be below nnodes {self.nnodes}")
        return self

    def nodes(self) -> Nodes:
        return Nodes(self.nnodes, self.node_rank, self.rdzv_endpoint)

    @field_validator("loss")
    @classmethod
    def _loss_terms(cls, v: dict[str, Any]) -> dict[str, Any]:
        return validate_loss(
            v,
            list(TERMS),
            "{ce: 1.0}",
            lambda name: f"unknown loss term {name!r}{did_you_mean(name, list(TERMS))}; terms: {', '.join(TERMS)}",
        )


def _pairs(cfg: DistillConfig) -> list[tuple[str, str, str]]:
    """(term name, student layer, teacher layer) for every pair the loss names."""
    return [(name, p["student"], p["teacher"]) for name, t in cfg.loss.items() for p in t.get("pairs", [])]


@register_pass
class Distill(Pass):
    name = "distill"
    Config = DistillConfig
    requires = frozenset({"teacher", "data", "student"})
    produces = frozenset({"distilled"})
    must_precede: ClassVar[dict[str, str]] = {
        "lowered": "distillation changes the PyTorch student, and lower has already exported it"
    }
    changes_student = True
    result_key = ("student", "distill")

    @classmethod
    def report_sections(cls, result: dict[str, Any]) -> list[Section]:
        return distill_sections(result.get("student", {}))

    def check(self, where: str, teacher: nn.Module, student: nn.Module | None) -> None:
        c: DistillConfig = self.config  # type: ignore[assignment]
        problems = []
        index: dict[str, int] = {}
        for term, s, t in _pairs(c):
            i = index[term] = index.get(term, -1) + 1
            base = f"{where}.loss.{term}.pairs[{i}]"
            if student is not None and (p := check_layer(student, s, f"{base}.student", "student")):
                problems.append(p)
            if p := check_layer(teacher, t, f"{base}.teacher", "teacher"):
                problems.append(p)
            elif term == "minilm" and student is not None and s in dict(student.named_modules()):
                problems += _attention_problems(base, student, s, teacher, t, c.loss[term].get("relation_heads", 0))
        if problems:
            raise ConfigError(
                f"{len(problems)} layer name problem(s)\n  " + "\n  ".join(problems),
                fix="layer names are module paths (print(model) shows them)",
                problems=problems,
            )

    def run(self, ctx: Context) -> None:
        c: DistillConfig = self.config  # type: ignore[assignment]
        assert ctx.student is not None
        teacher, student = ctx.teacher, ctx.student
        seed = ctx.config.seed if c.seed is None else c.seed
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        labels = c.labels or ctx.config.data.labels
        fraction = c.fraction if c.fraction is not None else ctx.config.data.fraction
        metrics: dict[str, Any] = {
            "loss": c.loss,
            "init": c.init,
            "labels": labels,
            "fraction": fraction,
            "device": describe(torch.device(ctx.train_device)),
            "amp": ctx.amp,
        }
        text = ctx.data.is_text
        if text and "augment" in c.model_fields_set and c.augment and not isinstance(c.augment, TokenAugment):
            ctx.note(
                "distill.augment: image augmentation does not apply to token inputs (ignored); "
                "augment: {mask: 0.1} masks tokens instead"
            )
        if c.init == "inherit" and text:
            ctx.note("distill.init inherit: a text student inherits when it is built (student.arch shrink or hf)")
        elif c.init == "inherit":
            metrics["inherited"] = inherit(student, teacher, ctx.data.train.x[:2])
            if metrics["inherited"]["copied"] + metrics["inherited"]["sliced"] == 0:
                ctx.note("distill.init inherit: no teacher tensor fits the student; it stays randomly initialised")

        train_split = subset(ctx.data.train, fraction, seed)

        recipe = c.recipe(seed, labels, ctx.train_device, ctx.amp, min(ctx.data.input_shape[1:]), text,
                          _token_ids(ctx.data) if text else None)  # fmt: skip
        if recipe.settings.token_mask:
            metrics["augment"] = {"mask": recipe.settings.token_mask}
        if c.nproc > 1 or c.nnodes > 1:
            assert ctx.student_spec is not None
            state, history, agreement = fit_distributed(
                c.nproc,
                recipe,
                teacher_spec_for_workers(ctx),
                teacher.state_dict(),
                ctx.student_spec,
                student.state_dict(),
                train_split,
                ctx.data.val,
                ctx.events.path,
                ctx.quiet,
                c.nodes(),
            )
            student.load_state_dict(state)
            student.eval()
            metrics["distributed"] = {"processes": c.nproc, **agreement}
        else:
            history = fit(
                student,
                student,
                teacher,
                train_split,
                ctx.data.val,
                recipe,
                ctx.progress("distill"),
                lambda rec: ctx.events.emit("epoch", pass_="distill", **rec),
            )
        test_acc = accuracy(student, ctx.data.test)
        metrics.update(
            {
                "epochs": history.epochs,
                "best_epoch": history.best_epoch,
                "stopped_early": history.stopped_early,
                "val_accuracy": history.best_val_accuracy,
                "test_accuracy": test_acc,
                "seconds": round(history.seconds, 1),
                "train_samples": len(train_split),
            }
        )
        ctx.metrics["distill"] = metrics
        ctx.stages.append(
            {
                "stage": "distill",
                "model": "student fp32 (PyTorch)",
                "accuracy": test_acc,
                "params": count_params(student),
                "macs": count_macs(student, ctx.data.input_shape),  # this student's: a later prune changes it
                "measured": "PyTorch on host, test split",
            }
        )


def _attention_problems(
    base: str, student: nn.Module, s: str, teacher: nn.Module, t: str, relation_heads: float
) -> list[str]:
    """What keeps a minilm pair of attention modules from comparing: one side without query/key/value projections,
    or relation heads that do not divide both widths."""
    m_s, m_t = dict(student.named_modules())[s], dict(teacher.named_modules())[t]
    p_s, p_t = projections(m_s), projections(m_t)
    if p_s is None and p_t is None:
        return []  # modules returning (output, probs, values) themselves
    if p_s is None or p_t is None:
        side, name = ("student", s) if p_s is None else ("teacher", t)
        return [
            f"{base}.{side}: {name!r} is not an attention module with query/key/value projections; pair the "
            "self-attention modules (e.g. ...encoder.layer.N.attention.self)"
        ]
    heads = int(relation_heads) or attention_heads(m_t) or 1
    widths = {"student": p_s[0].out_features, "teacher": p_t[0].out_features}
    bad = [f"the {k}'s {w}" for k, w in widths.items() if w % heads]
    if bad:
        return [
            f"{base}: {heads} relation heads do not divide {' and '.join(bad)}-wide projections; set "
            f"minilm.relation_heads to a number dividing {widths['student']} and {widths['teacher']}"
        ]
    return []


def _token_ids(data: DataBundle) -> tuple[int, tuple[int, ...], int, int] | None:
    """What token masking needs of packed text inputs: (mask id, ids never masked, input_ids row, attention mask
    row or -1); None when the tokenizer has no mask token."""
    inputs = list(data.preprocessing.get("inputs", []))
    if data.mask_token_id is None or "input_ids" not in inputs:
        return None
    attention = inputs.index("attention_mask") if "attention_mask" in inputs else -1
    return data.mask_token_id, tuple(data.special_token_ids), inputs.index("input_ids"), attention


def teacher_spec_for_workers(ctx: Context) -> Any:
    """The teacher's spec with its folder (text teachers) as an absolute path: workers run elsewhere."""
    spec = ctx.config.teacher
    return spec if spec.path is None else spec.model_copy(update={"path": ctx.config.resolve(spec.path)})


__all__ = ["Distill", "DistillConfig", "Term"]
