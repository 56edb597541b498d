"""MobileNetV2-like networks of inverted residual blocks (Sandler et al. 2018) for small images.

Each stage has its own depth (blocks), width (output channels), expand ratio and depthwise kernel
size; the first block of a stage changes the width and (except in stage 1) halves the spatial size.
As in the CIFAR ResNets, the stem keeps the spatial size, so the same network fits 1x28x28
(Fashion-MNIST) and 3x32x32 inputs; ``stem_stride``/``first_stride`` downsample larger ones. Activations are
plain ``nn.ReLU`` modules (one per use, as
the PT2E quantizers require, and what NASWOT reads), not ReLU6: nothing here needs the clipping.

The zoo protocol holds: ``features(x)`` is the map before global pooling, ``fc`` the classifier,
``stem``/``layer1``../``head`` the layer names configs pair for distillation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgekd.models.zoo.staged import StagedNet
from edgekd.models.zoo.staged import stem as stem_block


def _per_stage(name: str, value: int | Sequence[int], stages: int) -> list[int]:
    values = [value] * stages if isinstance(value, int) else list(value)
    if len(values) != stages:
        raise ValueError(f"{name} {values} must give one value per stage ({stages} stages)")
    return values


class InvertedResidual(nn.Module):
    """1x1 expand (skipped at ratio 1) -> k x k depthwise (stride) -> 1x1 linear projection, plus the
    identity when the shape is kept."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int, kernel: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(in_ch, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.residual else out


class MobileNetLike(StagedNet):
    """Stem (3x3 conv), stages of inverted residual blocks, optional 1x1 head, global pooling, linear."""

    def __init__(
        self,
        depths: Sequence[int] = (1, 2, 2),
        widths: Sequence[int] = (16, 24, 48),
        expand: int | Sequence[int] = 4,
        kernel: int | Sequence[int] = 3,
        stem: int = 16,
        head: int | None = None,
        in_channels: int = 3,
        num_classes: int = 10,
        stem_stride: int = 1,
        first_stride: int = 1,
    ) -> None:
        super().__init__()
        depths, widths = list(depths), list(widths)
        if not depths or len(depths) != len(widths):
            raise ValueError(f"depths {depths} and widths {widths} must have the same, non-zero length")
        expands = _per_stage("expand", expand, len(depths))
        kernels = _per_stage("kernel", kernel, len(depths))
        if any(v < 1 for v in [*depths, *widths, *expands, stem, head or 1]):
            raise ValueError("depths, widths, expand ratios, stem and head must all be >= 1")
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"kernel sizes must be odd, got {kernels}")
        if first_stride not in (1, 2):
            raise ValueError(f"first_stride must be 1 or 2, got {first_stride}")
        self.stem = stem_block(in_channels, stem, stem_stride)
        in_ch = stem
        for i, (n, w, e, k) in enumerate(zip(depths, widths, expands, kernels, strict=True)):
            stride = first_stride if i == 0 else 2
            blocks = []
            for j in range(n):
                blocks.append(InvertedResidual(in_ch, w, stride if j == 0 else 1, e, k))
                in_ch = w
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.head: nn.Module = nn.Identity()
        if head:
            self.head = nn.Sequential(
                nn.Conv2d(in_ch, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU(inplace=True)
            )
            in_ch = head
        self.finish(len(depths), in_ch, num_classes)


def mobilenet(**params: object) -> MobileNetLike:
    return MobileNetLike(**params)  # type: ignore[arg-type]
