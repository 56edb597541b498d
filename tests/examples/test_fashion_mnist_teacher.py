"""The Fashion-MNIST example's teacher never saw the split the accuracy guard judges on, and the example asks for
a 1-point budget (before: the teacher trained on all 60k images, so the example needed max_accuracy_drop 3.0)."""

from __future__ import annotations

import hashlib
import json

import pytest

from edgekd.compiler.plan import load_model_config
from edgekd.data import load_data
from edgekd.data.sources import FASHION_MNIST_SYSTEM
from tests.helpers import EXAMPLE


def test_the_example_budget_is_one_point_on_a_split_the_teacher_never_saw() -> None:
    cfg = load_model_config(EXAMPLE / "model.yaml")
    record = json.loads((EXAMPLE / "teacher.json").read_text())
    assert cfg.constraints.max_accuracy_drop == 1.0
    held = record["held_out"]
    assert (held["split"], held["val_fraction"], held["seed"]) == ("val", cfg.data.val_fraction, cfg.seed)
    assert "54,000" in record["recipe"]["data"] and held["images"] == 6000
    assert record["sha256"] == hashlib.sha256((EXAMPLE / "teacher.pt").read_bytes()).hexdigest()


@pytest.mark.skipif(not FASHION_MNIST_SYSTEM.is_dir(), reason="the full Fashion-MNIST set is not installed")
def test_the_recorded_split_is_the_one_the_compile_holds_out() -> None:
    cfg = load_model_config(EXAMPLE / "model.yaml")
    data = load_data(cfg.data, cfg.calibration, cfg.base_dir, cfg.seed)
    assert data.val.sha256() == json.loads((EXAMPLE / "teacher.json").read_text())["held_out"]["sha256"]
