"""The shape both zoo families share: stem -> layer1..layerN -> head -> global pool -> flatten -> fc."""

from __future__ import annotations

import math

import torch
from torch import nn

FINAL_MAP = 7  # pixels: where ImageNet CNNs (ResNet, MobileNet, EfficientNet) end at 224x224


def downsampling_for(size: int, stages: int) -> dict[str, int]:
    """``stem_stride`` (1, 2, 4) and ``first_stride`` (stage 1: 1, 2) that bring a ``size``-pixel input to a final
    map of about :data:`FINAL_MAP` pixels after ``stages`` stages (each stage after the first halves the map):
    28x28 and 32x32 keep today's stride-1 stem (final 7 / 8), 64 gets a stride-2 stem (final 8), 224 a stride-4
    stem and a stride-2 first stage (final 7, as ResNet-18 and MobileNetV2)."""
    halvings = max(0, round(math.log2(max(size, 1) / FINAL_MAP)))
    extra = max(0, halvings - (stages - 1))
    return {"stem_stride": 2 ** min(extra, 2), "first_stride": 2 if extra > 2 else 1}


def stem(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """3x3 conv + BN + ReLU; stride 2 in the conv, stride 4 adds a 3x3/2 max pool (ResNet's ImageNet stem)."""
    if stride not in (1, 2, 4):
        raise ValueError(f"stem_stride must be 1, 2 or 4, got {stride}")
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, min(stride, 2), 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if stride == 4:
        layers.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*layers)


class StagedNet(nn.Module):
    """Subclasses build ``stem``, ``layer1``..``layerN`` (optionally a ``head``), then call :meth:`finish`."""

    stem: nn.Module
    num_stages: int

    def finish(self, num_stages: int, in_ch: int, num_classes: int) -> None:
        """The pooling classifier after the stages, and the weight init of every convolution and batch norm."""
        self.num_stages = num_stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before global pooling (used by relation-based proxies and losses)."""
        x = self.stem(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        head = getattr(self, "head", None)  # MobileNet-like: an optional 1x1 head
        return x if head is None else head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))
