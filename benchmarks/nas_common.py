"""Shared by the student-search benchmarks (proxy_correlation, proxy_cost, search_e2e): the data, the
example teacher, and the one short distillation recipe every candidate is trained with, cached on disk.

The recipe is the distill pass's own code (``edgekd.train.objective.fit`` with a validated
``DistillConfig`` loss), with the example config's optimizer and KD loss; only the epochs and the
number of training images are cut down. Every trained candidate is cached as one JSON file keyed by a
hash of (architecture, loss, recipe, data, seed), so interrupted or repeated runs resume for free.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd import __version__
from edgekd.config.model import CalibrationConfig, DataConfig
from edgekd.core.artifacts import atomic_write_bytes
from edgekd.data import load_data
from edgekd.data.dataset import DataBundle
from edgekd.models import zoo
from edgekd.models.build import load_weights
from edgekd.models.count import count_macs, count_params
from edgekd.stages.distill.stage import DistillConfig
from edgekd.train.loop import accuracy, predict
from edgekd.train.objective import Recipe, fit

TEACHER = ROOT / "examples" / "fashion-mnist" / "teacher.pt"
TEACHER_PARAMS = {"depth": 20, "width": 32, "in_channels": 1, "num_classes": 10}
LOSSES = {"kd": {"ce": 0.1, "kd": {"weight": 0.9, "temperature": 4}}, "ce": {"ce": 1.0}}
RECIPE = {
    "epochs": 3,
    "batch_size": 128,
    "optimizer": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
    "schedule": "onecycle",
    "augment": False,
}


def load(train: int, seed: int = 0) -> DataBundle:
    """Fashion-MNIST (full set when installed): the first ``train`` images of the shuffled training split,
    the 6,000-image validation split, the full 10k test split."""
    return load_data(DataConfig(source="fashion-mnist", train_limit=train), CalibrationConfig(), ROOT, seed)


def teacher() -> torch.nn.Module:
    t = zoo.build("resnet", TEACHER_PARAMS)
    load_weights(t, TEACHER, "teacher")
    return t.eval()


def teacher_logits(t: torch.nn.Module, data: DataBundle, cache: Path) -> torch.Tensor:
    """The teacher's logits on the training images, computed once and kept beside the runs."""
    path = cache / f"teacher-logits-{len(data.train)}-{hashlib.sha256(TEACHER.read_bytes()).hexdigest()[:12]}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    logits = predict(t, data.train.x)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(logits, tmp)
    tmp.replace(path)  # atomic: two benchmark processes may compute them at once
    return logits


def recipe(mode: str, seed: int, epochs: int | None = None) -> Recipe:
    cfg = DistillConfig.model_validate({**RECIPE, "loss": LOSSES[mode], **({"epochs": epochs} if epochs else {})})
    return cfg.recipe(seed, "given")


def build(arch: str, params: dict[str, Any], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return zoo.build(arch, params)


def _cache_entry(
    arch: str, params: dict[str, Any], mode: str, data: DataBundle, cache: Path, seed: int, epochs: int | None
) -> tuple[dict[str, Any], Path]:
    key_doc = {
        "arch": arch,
        "params": params,
        "mode": mode,
        "recipe": {**RECIPE, **({"epochs": epochs} if epochs else {}), "loss": LOSSES[mode]},
        "train": len(data.train),
        "data": data.source,
        "seed": seed,
        "version": __version__,
    }
    key = hashlib.sha256(json.dumps(key_doc, sort_keys=True).encode()).hexdigest()[:16]
    return key_doc, cache / f"{mode}-{key}.json"


def cached_result(
    arch: str,
    params: dict[str, Any],
    mode: str,
    data: DataBundle,
    cache: Path,
    seed: int = 0,
    epochs: int | None = None,
) -> dict[str, Any] | None:
    """The cached result of ``train_candidate``, or None when that candidate has not been trained yet."""
    path = _cache_entry(arch, params, mode, data, cache, seed, epochs)[1]
    return json.loads(path.read_text()) if path.is_file() else None


def distill(
    arch: str,
    params: dict[str, Any],
    mode: str,
    data: DataBundle,
    t: torch.nn.Module,
    logits: torch.Tensor,
    seed: int = 0,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Train one candidate with the short recipe, uncached: its accuracies, epochs, timings and size."""
    model = build(arch, params, seed)
    stamps: list[float] = []
    t0 = time.perf_counter()
    history = fit(
        model,
        model,
        t,
        data.train,
        data.val,
        recipe(mode, seed, epochs),
        on_epoch=lambda _rec: stamps.append(time.perf_counter()),
        teacher_logits=logits,  # unused by the ce loss, saves recomputing them
    )
    shape = tuple(data.input_shape)
    return {
        "val_accuracy": history.best_val_accuracy,
        "test_accuracy": accuracy(model, data.test),
        "best_epoch": history.best_epoch,
        "epochs_log": history.epochs,
        "seconds": round(history.seconds, 2),
        "epoch_seconds": [round(b - a, 2) for a, b in zip([t0, *stamps], stamps, strict=False)],
        "n_params": count_params(model),
        "macs": count_macs(model, shape),
    }


def train_candidate(
    arch: str,
    params: dict[str, Any],
    mode: str,
    data: DataBundle,
    t: torch.nn.Module,
    logits: torch.Tensor,
    cache: Path,
    seed: int = 0,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Train one candidate with the short recipe (``mode`` kd or ce); cached by a hash of everything that matters."""
    key_doc, path = _cache_entry(arch, params, mode, data, cache, seed, epochs)
    if path.is_file():
        return json.loads(path.read_text())
    result = {**key_doc, **distill(arch, params, mode, data, t, logits, seed, epochs)}
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(result, indent=2) + "\n").encode())
    return result
