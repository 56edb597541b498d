"""A user's own CNN, as it comes: one plain ``nn.Sequential`` (no ``features()``, no ``fc``), for benchmarks/byom.py."""

from __future__ import annotations

from torch import nn


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def cnn(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Five 3x3 convolutions in three stages (32, 64, 128 channels; max pooling between), global average pooling
    and one linear layer: about 22 MMACs at 28x28."""
    return nn.Sequential(
        *_conv(in_channels, 32),
        *_conv(32, 32),
        nn.MaxPool2d(2),
        *_conv(32, 64),
        *_conv(64, 64),
        nn.MaxPool2d(2),
        *_conv(64, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, num_classes),
    )
