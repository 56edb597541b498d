"""The EfficientNet-Lite0 example: its model.yaml validates, and its teacher builder gives the pretrained model
(found by forward hooks: 1280-channel 7x7 features, a 1000-class classifier) with no checkpoint and no warning."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from edgekd.compiler.plan import load_model_config
from edgekd.models.taps import run_tapped
from tests.helpers import REPO

EXAMPLE = REPO / "examples" / "efficientnet-lite0"


def test_the_example_config_validates(tmp_path: Path) -> None:
    # photos.npz is made by prepare_photos.py (not committed): validate the config beside a stand-in file
    shutil.copy(EXAMPLE / "model.yaml", tmp_path / "model.yaml")
    (tmp_path / "photos.npz").write_bytes(b"")
    cfg = load_model_config(tmp_path / "model.yaml")
    assert cfg.teacher.arch == "lite0:teacher" and cfg.teacher.checkpoint is None
    assert cfg.data.labels == "teacher" and cfg.data.input_shape == (3, 224, 224)
    assert cfg.student is not None and cfg.student.params["stem_stride"] == 4


def test_the_teacher_is_the_pretrained_efficientnet_lite0(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("efficientnet_lite_pytorch", reason="the examples extra is not installed")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    sys.modules.pop("lite0", None)
    from lite0 import teacher

    model = teacher().eval()
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    with torch.no_grad():
        tapped = run_tapped(model, torch.zeros(1, 3, 224, 224), "teacher")
    assert tapped.features.shape[1:] == (1280, 7, 7) and tapped.classifier.out_features == 1000
