"""Helpers shared by tests: a tiny, fast compile set-up on the bundled Fashion-MNIST subset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import yaml

from edgekd.models import zoo

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "fashion-mnist"

os.environ.setdefault("OMP_NUM_THREADS", "2")

TINY_TEACHER = {"depth": 8, "width": 8, "in_channels": 1, "num_classes": 10}
TINY_STUDENT = {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 10}


def tiny_config(folder: Path, **overrides: object) -> dict:
    """A model.yaml dict with a random tiny teacher checkpoint written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / "teacher.pt"
    if not ckpt.exists():
        torch.manual_seed(0)
        torch.save(zoo.build("resnet", TINY_TEACHER).state_dict(), ckpt)
    cfg: dict = {
        "name": "tiny",
        "teacher": {"arch": "resnet", "params": dict(TINY_TEACHER), "checkpoint": "teacher.pt"},
        "student": {"arch": "resnet", "params": dict(TINY_STUDENT)},
        "data": {"source": "fashion-mnist", "subset": True, "train_limit": 512, "test_limit": 256},
        "calibration": {"samples": 32},
        "passes": [
            {"distill": {"epochs": 1, "batch_size": 64}},
            {"quantize": {"precision": "int8"}},
            {"lower": {"parity": {"samples": 64, "min_top1": 80.0, "min_cosine": 0.9}}},
            {"profile": {"warmup": 2, "runs": 10, "rounds": 2}},
            {"report": {}},
        ],
    }
    cfg.update(overrides)
    return cfg


def write_config(folder: Path, cfg: dict, name: str = "model.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def fashion_subset(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images of the bundled Fashion-MNIST subset, normalised as the data pipeline does."""
    from edgekd.config.model import CalibrationConfig, DataConfig
    from edgekd.data import load_data

    data = load_data(
        DataConfig(source="fashion-mnist", subset=True, train_limit=64, test_limit=n),
        CalibrationConfig(samples=8),
        REPO,
        0,
    )
    return data.test.x[:n], data.test.y[:n]


def trained_tiny_teacher(folder: Path, epochs: int = 3) -> Path:
    """Write ``folder/teacher.pt``: the tiny teacher trained briefly on the bundled subset (~60-70% accuracy),
    for tests whose accuracy guard needs a teacher that is better than chance. Takes a few seconds."""
    from edgekd.data.dataset import Split
    from edgekd.train.loop import TrainSettings, train

    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / "teacher.pt"
    data = np.load(REPO / "edgekd" / "bundled" / "fashion-mnist-subset.npz")
    x = torch.from_numpy(data["x_train"][:2048]).float().div(255)
    x = (x - 0.2860) / 0.3530
    y = torch.from_numpy(data["y_train"][:2048]).long()
    torch.manual_seed(0)
    model = zoo.build("resnet", TINY_TEACHER)
    settings = TrainSettings(epochs=epochs, batch_size=64, lr=0.05, augment=False, seed=0)
    train(
        model,
        Split(x, y),
        lambda logits, labels, _i, _x: {"ce": torch.nn.functional.cross_entropy(logits, labels)},
        settings,
    )
    torch.save(model.state_dict(), ckpt)
    return ckpt
