"""KD recovery: short fine-tuning of a compressed student against the teacher's soft targets.

Used by the prune pass after each pruning step and by the quantize pass for quantization-aware training.
Only logit terms (ce, kd, dkd, dist, sinkhorn) are allowed, so the teacher's logits are computed once and
reused for every step and epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pydantic import Field, field_validator
from torch import nn

from edgekd.core.schema import Strict, did_you_mean
from edgekd.data.dataset import Split
from edgekd.train.loop import ProgressSink, TrainHistory, TrainSettings
from edgekd.train.loss_config import validate_loss
from edgekd.train.objective import Recipe, fit

LOGIT_TERMS = ("ce", "kd", "dkd", "dist", "sinkhorn")


class RecoveryConfig(Strict):
    epochs: int = Field(default=2, ge=0, description="KD fine-tuning epochs (0: no recovery)")
    fraction: float = Field(
        default=1.0, gt=0, le=1, description="random share of the training split (the same images as distill's)"
    )
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=0.01, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0)
    schedule: str = Field(default="cosine", pattern="^(onecycle|cosine|constant)$")
    loss: dict[str, Any] = Field(
        default_factory=lambda: {"ce": 0.1, "kd": {"weight": 0.9, "temperature": 4.0}}, validate_default=True
    )

    @field_validator("loss")
    @classmethod
    def _logit_terms(cls, v: dict[str, Any]) -> dict[str, Any]:
        return validate_loss(
            v,
            LOGIT_TERMS,
            "{ce: 0.1, kd: 0.9}",
            lambda name: (
                f"unknown recovery loss term {name!r}{did_you_mean(name, list(LOGIT_TERMS))}; "
                f"recovery uses logit terms only: {', '.join(LOGIT_TERMS)}"
            ),
        )


def subset(train: Split, fraction: float, seed: int) -> Split:
    """The random share of ``train`` that the distill pass takes for the same ``fraction`` and compile seed
    (so the teacher's logits computed for distillation are reused)."""
    if fraction >= 1:
        return train
    g = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(train), generator=g)[: max(1, round(len(train) * fraction))]
    return train.subset(keep)


def recover(
    student: nn.Module,
    teacher: nn.Module,
    train: Split,
    val: Split,
    teacher_logits: torch.Tensor,
    cfg: RecoveryConfig,
    seed: int,
    progress: ProgressSink | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    device: str = "cpu",
    amp: str | None = None,
) -> TrainHistory | None:
    """Fine-tune ``student`` in place for ``cfg.epochs`` against the teacher (best validation epoch kept), the
    steps on ``device`` (with ``amp`` autocast); the student is returned where it was."""
    if cfg.epochs == 0:
        return None
    recipe = Recipe(
        loss=cfg.loss,
        labels="given",
        augment=False,
        settings=TrainSettings(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            schedule=cfg.schedule,
            augment=False,
            seed=seed,
            device=device,
            amp=amp,
        ),
    )
    return fit(student, student, teacher, train, val, recipe, progress, on_epoch, teacher_logits=teacher_logits)
