"""The shape both zoo families share: stem -> layer1..layerN -> head -> global pool -> flatten -> fc."""

from __future__ import annotations

import torch
from torch import nn


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
