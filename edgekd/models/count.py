"""Size of a model: parameters and multiply-accumulates of one sample."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one sample through every operator torch's FLOP counter knows (convolutions of any
    dimension and transposed, linear layers, matmul/bmm, attention): half its FLOPs. Element-wise operators
    (activations, adds, normalisation) are not multiply-accumulates and are not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2
