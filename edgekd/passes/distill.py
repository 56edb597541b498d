"""distill: train the student from the teacher with CE + Hinton KD (temperature-scaled, T^2-weighted)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from edgekd.config import Strict
from edgekd.kd.train import TrainSettings, accuracy, predict, train
from edgekd.models import count_params
from edgekd.pipeline import Context, Pass
from edgekd.registry import register_pass


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al. 2015: KL(softmax(t/T) || softmax(s/T)) * T^2 (the T^2 keeps gradients comparable to CE)."""
    t = temperature
    return (
        F.kl_div(
            F.log_softmax(student_logits / t, 1),
            F.log_softmax(teacher_logits / t, 1),
            reduction="batchmean",
            log_target=True,
        )
        * t
        * t
    )


class DistillConfig(Strict):
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=0.1, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    temperature: float = Field(default=4.0, gt=0)
    alpha: float = Field(default=0.9, ge=0, le=1, description="weight of the KD term; CE gets 1 - alpha")
    augment: bool = True
    seed: int | None = None
    threads: int | None = Field(default=None, ge=1)


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

    def run(self, ctx: Context) -> None:
        c: DistillConfig = self.config  # type: ignore[assignment]
        assert ctx.student is not None
        teacher, student, data = ctx.teacher, ctx.student, ctx.data
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        cached_teacher = None
        if not c.augment:  # inputs never change: one teacher pass over the data serves every epoch
            cached_teacher = predict(teacher, data.train.x)

        def loss(logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
            if cached_teacher is not None:
                t_logits = cached_teacher[idx]
            else:
                with torch.no_grad():
                    t_logits = teacher(x)
            terms = {}
            if c.alpha < 1:
                terms["ce"] = (1 - c.alpha) * F.cross_entropy(logits, y)
            if c.alpha > 0:
                terms["kd"] = c.alpha * kd_loss(logits, t_logits, c.temperature)
            return terms

        settings = TrainSettings(
            epochs=c.epochs,
            batch_size=c.batch_size,
            lr=c.lr,
            momentum=c.momentum,
            weight_decay=c.weight_decay,
            schedule=c.schedule,
            augment=c.augment,
            seed=ctx.config.seed if c.seed is None else c.seed,
            threads=c.threads,
        )
        student.train()
        history = train(
            student,
            data.train,
            loss,
            settings,
            val=data.val,
            progress=ctx.progress("distill"),
            on_epoch=lambda rec: ctx.events.emit("epoch", pass_="distill", **rec),
        )
        test_acc = accuracy(student, data.test)
        ctx.metrics["distill"] = {
            "epochs": history.epochs,
            "best_epoch": history.best_epoch,
            "val_accuracy": history.best_val_accuracy,
            "test_accuracy": test_acc,
            "seconds": round(history.seconds, 1),
            "train_samples": len(data.train),
        }
        ctx.stages.append(
            {
                "stage": "distill",
                "model": "student fp32 (PyTorch)",
                "accuracy": test_acc,
                "params": count_params(student),
                "measured": "PyTorch on host, test split",
            }
        )
