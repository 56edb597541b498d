"""Unlabelled training data (data.labels: teacher): the teacher annotates it, as in teacher-as-annotator work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import edgekd
from edgekd.core.errors import DataError
from edgekd.data.sources import FASHION_MNIST_SUBSET
from edgekd.models import zoo
from tests.helpers import TINY_TEACHER, tiny_config, write_config


def _unlabelled_npz(path: Path) -> Path:
    with np.load(FASHION_MNIST_SUBSET) as f:
        np.savez(path, x_train=f["x_train"][:400], x_test=f["x_test"][:200], y_test=f["y_test"][:200])
    return path


def _config(tmp_path: Path, labels: str | None) -> Path:
    data = {"source": "npz", "path": str(_unlabelled_npz(tmp_path / "unlabelled.npz"))}
    if labels:
        data["labels"] = labels
    cfg = tiny_config(
        tmp_path,
        data=data,
        passes=[{"distill": {"epochs": 1, "batch_size": 64, "augment": False, "loss": {"ce": 1.0}}}, {"report": {}}],
    )
    return write_config(tmp_path, cfg)


def test_teacher_labels_unlabelled_images(tmp_path: Path) -> None:
    res = edgekd.compile(_config(tmp_path, "teacher"), out=tmp_path / "runs", quiet=True)
    d = res.metrics["distill"]
    assert d["labels"] == "teacher" and d["train_samples"] == 360  # 10% held out for validation
    # the validation share is labelled by the teacher too: the student is scored on agreeing with it
    assert 0.0 <= d["val_accuracy"] <= 100.0


def test_label_with_uses_the_teachers_argmax(tmp_path: Path) -> None:
    from edgekd.config.model import CalibrationConfig, DataConfig
    from edgekd.data import load_data

    cfg = DataConfig(source="npz", path=_unlabelled_npz(tmp_path / "u.npz"), labels="teacher")
    data = load_data(cfg, CalibrationConfig(samples=16), tmp_path)
    assert data.unlabelled and bool((data.train.y == -1).all())
    torch.manual_seed(0)
    teacher = zoo.build("resnet", TINY_TEACHER).eval()
    with torch.no_grad():
        data.label_with(teacher)
        expected = teacher(data.train.x).argmax(1)
    assert torch.equal(data.train.y, expected) and not data.unlabelled
    assert torch.equal(data.calibration.y, expected[:16])


def test_missing_labels_need_labels_teacher(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing arrays y_train"):
        edgekd.compile(_config(tmp_path, None), out=tmp_path / "runs", quiet=True)


def test_the_teacher_labels_the_test_split_too_and_the_report_says_so(tmp_path: Path) -> None:
    """An image folder's index (or any given label) is not the teacher's class: with labels: teacher every split is
    labelled by the teacher (before, validation and test kept the given labels and accuracies were meaningless)."""
    with np.load(FASHION_MNIST_SUBSET) as f:  # given labels that are all wrong: a folder index of 0
        np.savez(tmp_path / "folder.npz", x_train=f["x_train"][:400], y_train=np.zeros(400, np.int64),
                 x_test=f["x_test"][:200], y_test=np.zeros(200, np.int64))  # fmt: skip
    cfg = tiny_config(
        tmp_path, data={"source": "npz", "path": "folder.npz", "labels": "teacher"}, passes=[{"report": {}}]
    )
    res = edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    assert res.metrics["teacher"]["test_accuracy"] == 100.0 and res.metrics["teacher"]["val_accuracy"] == 100.0
    assert any("every accuracy reported is top-1 agreement with the teacher" in n for n in res.notes)
