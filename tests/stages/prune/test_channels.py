"""Structured pruning keeps residual, concat and depthwise models consistent: forward, ONNX export, ORT parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.backends.onnx.lower import export_onnx
from edgekd.backends.onnx.runtime import OrtModel
from edgekd.core.errors import ConfigError
from edgekd.models.count import count_macs, count_params
from edgekd.models.zoo import build
from edgekd.stages.prune.channels import ChannelPruner, default_ignored, find_layers
from tests.helpers import TINY_TEACHER


class ConcatDepthwise(nn.Module):
    """Two branches concatenated, then a depthwise conv and a pointwise conv: the patterns DepGraph couples."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.BatchNorm2d(32), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(32, 32, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.a(x), self.b(x)], 1)
        return self.fc(self.pool(self.pw(self.dw(x))).flatten(1))


def _parity(model: nn.Module, path: Path) -> float:
    x = torch.randn(8, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        ref = model(x).numpy()
    out = OrtModel(export_onnx(model, x[:1], path)).predict(x.numpy())
    return float(np.abs(out - ref).max())


@pytest.mark.parametrize("importance", ["l1", "l2", "bn_scale", "taylor"])
def test_residual_resnet_pruned_is_smaller_and_matches_in_ort(tmp_path: Path, importance: str) -> None:
    torch.manual_seed(0)
    model = build("resnet", {**TINY_TEACHER, "width": 16})
    params, macs = count_params(model), count_macs(model, (1, 28, 28))
    pruner = ChannelPruner(model, torch.zeros(1, 1, 28, 28), 0.5, 1, importance, ignored=[model.fc])
    x = torch.randn(16, 1, 28, 28)
    pruner.step(lambda: model(x).logsumexp(1).mean())
    assert count_params(model) < 0.4 * params and count_macs(model, (1, 28, 28)) < 0.4 * macs
    assert model.fc.out_features == 10  # the classifier keeps its classes
    # the residual adds stay consistent: each stage's blocks share one width
    assert model.layer1[0].conv2.out_channels == model.stem[0].out_channels
    assert _parity(model, tmp_path / "m.onnx") < 1e-4


def test_ratio_is_reached_in_steps_with_round_to() -> None:
    model = build("resnet", {**TINY_TEACHER, "width": 16})
    pruner = ChannelPruner(model, torch.zeros(1, 1, 28, 28), 0.5, 2, "l2", round_to=4, ignored=[model.fc])
    widths = []
    for _ in range(2):
        pruner.step()
        widths.append([model.stem[0].out_channels, model.layer2[0].conv2.out_channels, model.fc.in_features])
    assert widths[0] == [12, 24, 48] and widths[1] == [8, 16, 32]  # 25% then 50% of 16/32/64, multiples of 4
    assert all(m.out_channels % 4 == 0 for m in model.modules() if isinstance(m, nn.Conv2d))


def test_global_scope_prunes_unevenly_but_stays_consistent(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build("resnet", {**TINY_TEACHER, "width": 16})
    ChannelPruner(model, torch.zeros(1, 1, 28, 28), 0.5, 1, "l2", global_pruning=True, ignored=[model.fc]).step()
    kept = [model.stem[0].out_channels / 16, model.layer2[0].conv2.out_channels / 32, model.fc.in_features / 64]
    assert len(set(kept)) > 1, kept  # groups ranked against each other: stages lose different shares
    assert _parity(model, tmp_path / "g.onnx") < 1e-4


def test_concat_and_depthwise_stay_consistent(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ConcatDepthwise()
    ChannelPruner(model, torch.zeros(1, 1, 28, 28), 0.5, 1, "l2", ignored=default_ignored_modules(model)).step()
    assert model.dw[0].groups == model.dw[0].in_channels == model.dw[0].out_channels == 16
    assert model.a[0].out_channels + model.b[0].out_channels == 16
    assert _parity(model, tmp_path / "c.onnx") < 1e-4


def default_ignored_modules(model: nn.Module) -> list[nn.Module]:
    return find_layers(model, default_ignored(model), "test")


def test_unknown_ignored_layer_names_the_key() -> None:
    model = build("resnet", TINY_TEACHER)
    with pytest.raises(ConfigError, match=r"passes\[1\].prune.ignore: no layer 'fc2' in the student"):
        find_layers(model, ["fc2"], "passes[1].prune.ignore")
