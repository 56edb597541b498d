"""Train a student against a teacher with a weighted sum of loss terms (the body of the distill pass).

Kept apart from the pass so that the same code runs in one process or in each DDP worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgekd.core.device import on_device
from edgekd.data.dataset import Split
from edgekd.models.text import attention_mask
from edgekd.train.loop import ProgressSink, TrainHistory, TrainSettings, teacher_predictions, train
from edgekd.train.losses import Batch, build_term
from edgekd.train.pairing import capture


@dataclass
class Recipe:
    """Plain, picklable description of a distillation run (validated loss settings + training settings)."""

    loss: dict[str, dict[str, Any]]
    labels: str
    augment: bool
    settings: TrainSettings

    def pairs(self) -> list[tuple[str, str]]:
        return sorted({(p["student"], p["teacher"]) for t in self.loss.values() for p in t.get("pairs", [])})


def fit(
    model: nn.Module,
    student: nn.Module,
    teacher: nn.Module,
    data: Split,
    val: Split | None,
    recipe: Recipe,
    progress: ProgressSink | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    teacher_logits: torch.Tensor | None = None,
) -> TrainHistory:
    """Train ``model`` (the student, or a DDP wrapper of it) in place; hooks are placed on ``student``.

    ``teacher_logits`` (the teacher's logits on ``data.x``, in order) saves the teacher pass when the caller
    trains several times on the same data (pruning steps, QAT); used only without augmentation or feature terms.
    Everything runs on ``recipe.settings.device``: the teacher is moved there for the run and back afterwards.
    """
    with on_device(teacher, recipe.settings.device):
        return _fit(model, student, teacher, data, val, recipe, progress, on_epoch, teacher_logits)


def _fit(
    model: nn.Module, student: nn.Module, teacher: nn.Module, data: Split, val: Split | None, recipe: Recipe,
    progress: ProgressSink | None, on_epoch: Callable[[dict[str, float]], None] | None,
    teacher_logits: torch.Tensor | None,
) -> TrainHistory:  # fmt: skip
    device = torch.device(recipe.settings.device)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    terms = {n: build_term(n, {k: v for k, v in s.items() if k != "weight"}) for n, s in recipe.loss.items()}
    weights = {n: s["weight"] for n, s in recipe.loss.items()}
    pairs = recipe.pairs()
    store_s: dict[str, Any] = {}
    store_t: dict[str, Any] = {}
    # without augmentation or feature terms the inputs never change: one teacher pass serves every epoch
    cached = None
    if not (recipe.augment or pairs):
        cached = teacher_logits if teacher_logits is not None else teacher_predictions(teacher, data.x, device)
        if len(cached) != len(data):
            raise ValueError(f"teacher_logits has {len(cached)} rows for {len(data)} training images")
        cached = cached.to(device)
    extra: list[nn.Parameter] = []
    with capture(student, {s for s, _ in pairs}, store_s), capture(teacher, {t for _, t in pairs}, store_t):
        adapted = [t for t in terms.values() if t.builds]
        if adapted:  # probe once so the adapters exist (with the right shapes) before the optimizer
            with torch.no_grad(), on_device(student, device):
                was = student.training
                student.eval()
                student(data.x[:2].to(device))
                student.train(was)
                teacher(data.x[:2].to(device))
            torch.manual_seed(recipe.settings.seed)  # identical adapters in every process
            for term in adapted:
                term.build({(s, t): (store_s[s], store_t[t]) for s, t in term.pairs})
        for term in terms.values():
            term.to(device)
            extra += list(term.parameters())
            term.train()

        def loss(logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
            if cached is not None:
                t_logits = cached[idx.to(device)]
            else:
                with torch.no_grad():
                    t_logits = teacher(x)
            labels = t_logits.argmax(1) if recipe.labels == "teacher" else y
            features = {(s, t): (store_s[s], store_t[t]) for s, t in pairs}
            batch = Batch(logits, t_logits, labels, features, mask=attention_mask(student, x))
            return {name: weights[name] * term(batch) for name, term in terms.items() if weights[name] > 0}

        model.train()
        return train(
            model, data, loss, recipe.settings, val=val, progress=progress, on_epoch=on_epoch, extra_params=extra
        )
