"""2:4 semi-structured sparsity (two of every four consecutive input weights are zero), for TensorRT.

Masks are chosen by magnitude along the input dimension (what sparse tensor cores read), kept through
fine-tuning by a forward pre-hook that re-applies them, and recorded so that lowering can build the engine
with ``trtexec --sparsity=enable``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def _eligible(m: nn.Module) -> bool:
    if isinstance(m, nn.Conv2d):
        return m.groups == 1 and (m.in_channels * m.kernel_size[0] * m.kernel_size[1]) % 4 == 0
    return isinstance(m, nn.Linear) and m.in_features % 4 == 0


def mask_2_4(weight: torch.Tensor) -> torch.Tensor:
    """A 0/1 mask keeping the two largest-magnitude weights of every group of four along the input dimension."""
    w = weight.detach().reshape(weight.shape[0], -1)
    groups = w.abs().reshape(w.shape[0], -1, 4)
    keep = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups).scatter_(-1, keep, 1.0)
    return mask.reshape(weight.shape)


def compute_masks(model: nn.Module, skip: set[str]) -> dict[str, torch.Tensor]:
    """Masks for every eligible Conv2d/Linear not in ``skip`` (layers whose input size is not a multiple of 4,
    and depthwise convolutions, stay dense)."""
    return {
        n: mask_2_4(m.weight)
        for n, m in model.named_modules()
        if n not in skip and _eligible(m)  # type: ignore[arg-type]
    }


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    modules = dict(model.named_modules())
    for n, mask in masks.items():
        modules[n].weight.mul_(mask)  # type: ignore[operator]


@contextlib.contextmanager
def masks_kept(model: nn.Module, masks: dict[str, torch.Tensor]) -> Iterator[None]:
    """While active, every forward first zeroes the masked weights (so optimizer steps cannot revive them)."""
    modules = dict(model.named_modules())
    hooks = []
    for n, mask in masks.items():

        def pre(m: nn.Module, _inp: object, mask: torch.Tensor = mask) -> None:
            with torch.no_grad():
                m.weight.mul_(mask)  # type: ignore[operator]

        hooks.append(modules[n].register_forward_pre_hook(pre))
    try:
        yield
    finally:
        for h in hooks:
            h.remove()
        apply_masks(model, masks)


def is_2_4(weight: torch.Tensor) -> bool:
    """True when every group of four input weights has at least two zeros."""
    w = weight.detach().reshape(weight.shape[0], -1).reshape(weight.shape[0], -1, 4)
    return bool(((w == 0).sum(-1) >= 2).all())
