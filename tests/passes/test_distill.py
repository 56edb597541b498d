"""distill: the KD term matches its definition, the student learns, the teacher is never updated."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

import edgekd
from edgekd.passes.distill import kd_loss
from tests.helpers import tiny_config, write_config


def test_kd_loss_matches_hand_computed_value() -> None:
    s = torch.tensor([[1.0, 2.0, 0.5]])
    t = torch.tensor([[2.0, 0.0, 1.0]])
    T = 2.0
    p_t = torch.softmax(t / T, 1)[0]
    log_p_s = torch.log_softmax(s / T, 1)[0]
    expected = float((p_t * (torch.log(p_t) - log_p_s)).sum()) * T * T
    assert math.isclose(float(kd_loss(s, t, T)), expected, rel_tol=1e-5)
    assert float(kd_loss(t, t, T)) < 1e-6


def test_kd_gradient_reaches_student_not_teacher() -> None:
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)
    kd_loss(s, t.detach(), 4.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def test_distill_improves_the_student_and_leaves_the_teacher_untouched(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, passes=[{"distill": {"epochs": 2, "batch_size": 64, "alpha": 0.5}}, {"report": {}}])
    cfg["data"]["train_limit"] = 2000
    teacher_before = {k: v.clone() for k, v in torch.load(tmp_path / "teacher.pt", weights_only=True).items()}
    res = edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    d = res.metrics["distill"]
    assert len(d["epochs"]) == 2 and d["epochs"][0]["loss_kd"] > 0 and d["epochs"][0]["loss_ce"] > 0
    assert d["test_accuracy"] > 25.0, d  # chance is 10%: the student learned (the tiny teacher is untrained)
    after = torch.load(tmp_path / "teacher.pt", weights_only=True)
    assert all(torch.equal(teacher_before[k], after[k]) for k in after)


def test_cached_teacher_logits_without_augmentation_give_the_same_loss(tmp_path: Path) -> None:
    """augment: false precomputes the teacher once; the KD loss must equal the per-batch computation."""
    from edgekd import zoo
    from edgekd.data.dataset import Split

    torch.manual_seed(0)
    teacher, x = zoo.build("resnet", {"depth": 8, "width": 4, "in_channels": 1}).eval(), torch.randn(16, 1, 28, 28)
    cached = teacher(x).detach()
    split = Split(x, torch.zeros(16, dtype=torch.long))
    idx = torch.arange(4, 12)
    with torch.no_grad():
        per_batch = teacher(split.x[idx])
    logits = torch.randn(8, 10)
    assert torch.allclose(kd_loss(logits, cached[idx], 4.0), kd_loss(logits, per_batch, 4.0), atol=1e-5)
    assert F.cross_entropy(logits, split.y[idx]) > 0
