"""CIFAR-style ResNets (He et al. 2016, section 4.2) for small images.

Depth ``6n + 2`` gives ``n`` basic blocks in each of three stages with widths
``w, 2w, 4w``; ``blocks`` and ``widths`` override that for search spaces. The
first convolution keeps the spatial size, so the same network fits 1x28x28
(Fashion-MNIST) and 3x32x32 inputs; ``stem_stride`` (2, 4) and ``first_stride`` (2) downsample larger ones
(:func:`edgekd.models.zoo.staged.downsampling_for` picks them for an input size). Every ReLU is its own module: the PT2E
quantizers refuse one activation module called twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgekd.models.zoo.staged import StagedNet, stem


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, kernel: int = 3) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(StagedNet):
    """Stem, three (or more) stages of basic blocks, global pooling, linear classifier.

    Attribute names (``stem``, ``layer1``.., ``fc``) are the layer names that
    configs use to pair student and teacher layers.
    """

    def __init__(
        self,
        depth: int = 20,
        width: int = 16,
        in_channels: int = 3,
        num_classes: int = 10,
        blocks: Sequence[int] | None = None,
        widths: Sequence[int] | None = None,
        kernel: int = 3,
        stem_stride: int = 1,
        first_stride: int = 1,
    ) -> None:
        super().__init__()
        if blocks is None:
            if depth < 8 or (depth - 2) % 6:
                raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110), got {depth}")
            blocks = [(depth - 2) // 6] * 3
        if widths is None:
            widths = [width * 2**i for i in range(len(blocks))]
        if len(blocks) != len(widths):
            raise ValueError(f"blocks {list(blocks)} and widths {list(widths)} must have the same length")
        if any(b < 1 for b in blocks) or any(w < 1 for w in widths):
            raise ValueError("every stage needs at least one block and one channel")
        if first_stride not in (1, 2):
            raise ValueError(f"first_stride must be 1 or 2, got {first_stride}")
        self.stem = stem(in_channels, widths[0], stem_stride)
        in_ch = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            stride = first_stride if i == 0 else 2
            stage = []
            for j in range(n):
                stage.append(BasicBlock(in_ch, w, stride if j == 0 else 1, kernel))
                in_ch = w
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.finish(len(blocks), in_ch, num_classes)


def resnet(**params: object) -> CifarResNet:
    return CifarResNet(**params)  # type: ignore[arg-type]
