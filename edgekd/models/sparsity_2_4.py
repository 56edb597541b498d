"""2:4 semi-structured sparsity for TensorRT: two of every four consecutive input channels are zero, at every
output channel and kernel position (the pattern sparse tensor cores read: a convolution's weight O x I x R x S is
grouped along I for each (o, r, s), a linear layer's O x I along I).

Masks are chosen by magnitude, kept through fine-tuning (the prune pass's recovery, QAT) by a forward pre-hook
that re-applies them, checked (:func:`is_2_4`) before lowering builds the engine with ``trtexec --sparsity=enable``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def eligible(m: nn.Module) -> bool:
    """A dense convolution or linear layer whose input channels come in fours."""
    if isinstance(m, nn.Conv2d):
        return m.groups == 1 and m.in_channels % 4 == 0
    return isinstance(m, nn.Linear) and m.in_features % 4 == 0


def _groups(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` as (..., I / 4, 4): the groups of four consecutive input channels TensorRT reads."""
    w = weight.permute(0, 2, 3, 1) if weight.ndim == 4 else weight  # O x R x S x I: input channels last
    return w.reshape(*w.shape[:-1], w.shape[-1] // 4, 4)


def mask_2_4(weight: torch.Tensor) -> torch.Tensor:
    """A 0/1 mask keeping the two largest-magnitude weights of every group of four input channels."""
    groups = _groups(weight.detach().abs())
    mask = torch.zeros_like(groups).scatter_(-1, groups.topk(2, dim=-1).indices, 1.0)
    mask = mask.reshape(*groups.shape[:-2], -1)
    return (mask.permute(0, 3, 1, 2) if weight.ndim == 4 else mask).contiguous()


def compute_masks(model: nn.Module, skip: set[str]) -> dict[str, torch.Tensor]:
    """Masks for every eligible Conv2d/Linear not in ``skip`` (layers whose input size is not a multiple of 4,
    and depthwise convolutions, stay dense)."""
    return {
        n: mask_2_4(m.weight)
        for n, m in model.named_modules()
        if n not in skip and eligible(m)  # type: ignore[arg-type]
    }


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    modules = dict(model.named_modules())
    for n, mask in masks.items():
        modules[n].weight.mul_(mask)  # type: ignore[operator]


@contextlib.contextmanager
def masks_kept(model: nn.Module, masks: dict[str, torch.Tensor], on: nn.Module | None = None) -> Iterator[None]:
    """While active, every forward of ``model`` first zeroes the masked weights (so optimizer steps cannot revive
    them). The weights are taken when the block starts; ``on`` is the module that is trained and called, when it is
    another one sharing ``model``'s parameters (QAT's simulation)."""
    modules = dict(model.named_modules())
    weights = [(modules[n].weight, mask) for n, mask in masks.items()]

    @torch.no_grad()
    def zero(*_: object) -> None:
        for w, mask in weights:  # the mask follows the weight to the device training moved it to
            w.mul_(mask.to(w.device))  # type: ignore[operator]

    hook = (on or model).register_forward_pre_hook(zero)
    try:
        yield
    finally:
        hook.remove()
        zero()


def is_2_4(weight: torch.Tensor) -> bool:
    """True when every group of four input channels (at each output channel and kernel position) has at least two
    zeros: what TensorRT needs to run the layer on sparse tensor cores."""
    if weight.shape[1] % 4:
        return False
    return bool(((_groups(weight.detach()) == 0).sum(-1) >= 2).all())


def sparse_layers(model: nn.Module) -> dict[str, torch.Tensor]:
    """The eligible layers whose weights are already 2:4, each with the mask of its zeros (to keep them zero while
    a later pass trains the model)."""
    return {
        n: (m.weight.detach() != 0).to(m.weight.dtype)  # type: ignore[union-attr]
        for n, m in model.named_modules()
        if eligible(m) and is_2_4(m.weight)  # type: ignore[arg-type]
    }
