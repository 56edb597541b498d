"""Quantization-aware training with the teacher (quantized distillation, Polino et al. 2018).

A straight-through fake quantizer that simulates what ONNX Runtime's static QDQ quantization computes:
per-channel symmetric int8 weights (scale = max|w| / 127) of every convolution with its BatchNorm folded in
(BN statistics frozen), and per-tensor activations at every Conv/Linear input (asymmetric uint8 or symmetric
int8, ranges from calibration data then tracked by an exponential moving average). The student is trained
against the teacher's soft targets through these quantizers.

:func:`snap_weights` then writes the fake-quantized weights back into the plain student (conv weights such
that conv+BN folds onto the int8 grid). Exported and quantized by ONNX Runtime, the folded weights land on
exactly the grid QAT trained on; activation ranges are recalibrated on the same calibration data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class ActFakeQuant(nn.Module):
    """Per-tensor fake quantization with an EMA-tracked range (uint8 asymmetric or int8 symmetric)."""

    def __init__(self, activation_type: str = "uint8", momentum: float = 0.01) -> None:
        super().__init__()
        self.symmetric = activation_type == "int8"
        self.momentum = momentum
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("initialised", torch.tensor(False))
        self.observe_only = False

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = x.min().clamp(max=0.0), x.max().clamp(min=0.0)
        if not bool(self.initialised):
            self.lo.copy_(lo)
            self.hi.copy_(hi)
            self.initialised.fill_(True)
        elif self.observe_only:  # calibration: min/max over every batch
            self.lo.copy_(torch.minimum(self.lo, lo))
            self.hi.copy_(torch.maximum(self.hi, hi))
        else:
            self.lo.lerp_(lo, self.momentum)
            self.hi.lerp_(hi, self.momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.observe_only:
            self._observe(x)
        if self.observe_only:
            return x
        if self.symmetric:
            scale = (torch.maximum(-self.lo, self.hi) / 127.0).clamp(min=1e-8)
            return torch.fake_quantize_per_tensor_affine(x, scale, torch.tensor(0, dtype=torch.int32), -127, 127)
        scale = ((self.hi - self.lo) / 255.0).clamp(min=1e-8)
        zero = torch.clamp(torch.round(-self.lo / scale), 0, 255).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 fake quantization (ONNX Runtime's WeightSymmetric grid)."""
    absmax = w.detach().abs().reshape(w.shape[0], -1).amax(1)
    scale = (absmax / 127.0).clamp(min=1e-12)
    zero = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


def _bn_factor(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    assert bn.running_var is not None and bn.running_mean is not None
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_var)
    k = gamma / torch.sqrt(bn.running_var + bn.eps)
    return k, beta - bn.running_mean * k


class QConvBN(nn.Module):
    """Conv2d (+ its BatchNorm, folded with frozen statistics) on fake-quantized inputs and weights."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, act: ActFakeQuant) -> None:
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, act

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = self.conv.weight, self.conv.bias
        if self.bn is None:
            return w, b
        k, shift = _bn_factor(self.bn)
        bias = shift + (b * k if b is not None else 0)
        return w * k.reshape(-1, 1, 1, 1), bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.folded()
        c = self.conv
        return F.conv2d(self.act(x), fake_quant_weight(w), b, c.stride, c.padding, c.dilation, c.groups)


class QLinear(nn.Module):
    def __init__(self, linear: nn.Linear, act: ActFakeQuant) -> None:
        super().__init__()
        self.linear, self.act = linear, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act(x), fake_quant_weight(self.linear.weight), self.linear.bias)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str | None]]:
    """(conv path, its BatchNorm path or None): a Conv2d directly followed, in the same parent, by a
    BatchNorm2d of its output width (the pattern ONNX export folds)."""
    pairs: list[tuple[str, str | None]] = []
    for parent_name, parent in model.named_modules():
        children = list(parent.named_children())
        for i, (name, m) in enumerate(children):
            if not isinstance(m, nn.Conv2d):
                continue
            path = f"{parent_name}.{name}" if parent_name else name
            bn = None
            if i + 1 < len(children) and isinstance(children[i + 1][1], nn.BatchNorm2d):
                nxt_name, nxt = children[i + 1]
                if nxt.num_features == m.out_channels:  # type: ignore[union-attr]
                    bn = f"{parent_name}.{nxt_name}" if parent_name else nxt_name
            pairs.append((path, bn))
    return pairs


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_name, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, module)


@contextlib.contextmanager
def fake_quantized(
    model: nn.Module, activation_type: str = "uint8", skip: set[str] | None = None
) -> Iterator[dict[str, nn.Module]]:
    """Swap every Conv2d(+BN) and Linear of ``model`` for its fake-quantized twin while the block runs.

    Layers in ``skip`` stay in float (per-layer fallback). The original modules (whose parameters the twins
    train) are put back on exit. Yields {layer path: twin}.
    """
    skip = skip or set()
    swapped: list[tuple[str, nn.Module]] = []
    twins: dict[str, nn.Module] = {}
    for conv_path, bn_path in conv_bn_pairs(model):
        if conv_path in skip:
            continue
        conv = model.get_submodule(conv_path)
        bn = model.get_submodule(bn_path) if bn_path else None
        twin = QConvBN(conv, bn, ActFakeQuant(activation_type))  # type: ignore[arg-type]
        swapped.append((conv_path, conv))
        _set(model, conv_path, twin)
        if bn_path and bn is not None:
            swapped.append((bn_path, bn))
            _set(model, bn_path, nn.Identity())
        twins[conv_path] = twin
    for path, m in list(model.named_modules()):
        if isinstance(m, nn.Linear) and path not in skip:
            twin = QLinear(m, ActFakeQuant(activation_type))
            swapped.append((path, m))
            _set(model, path, twin)
            twins[path] = twin
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d | QConvBN)]
    frozen = _FrozenBN(bns)
    try:
        with frozen:
            yield twins
    finally:
        for path, m in reversed(swapped):
            _set(model, path, m)


class _FrozenBN:
    """Keeps the folded BatchNorms in eval mode (frozen statistics) whatever ``model.train()`` sets."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.bns = [m.bn for m in modules if isinstance(m, QConvBN) and m.bn is not None]
        self.hooks: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> None:
        for bn in self.bns:
            self.hooks.append(bn.register_forward_pre_hook(lambda m, _i: m.eval()))
            bn.eval()

    def __exit__(self, *exc: object) -> None:
        for h in self.hooks:
            h.remove()


@torch.no_grad()
def calibrate(model: nn.Module, twins: dict[str, nn.Module], x: torch.Tensor, batch_size: int = 128) -> None:
    """Set every activation range to the min/max seen on ``x`` (as ORT's MinMax calibration does)."""
    acts = [t.act for t in twins.values()]  # type: ignore[union-attr]
    for a in acts:
        a.observe_only = True
        a.initialised.fill_(False)
    was = model.training
    model.eval()
    for i in range(0, len(x), batch_size):
        model(x[i : i + batch_size])
    model.train(was)
    for a in acts:
        a.observe_only = False


@torch.no_grad()
def snap_weights(twins: dict[str, nn.Module]) -> None:
    """Write the fake-quantized weights back: folded conv weights on the int8 grid (divided by BN's factor so
    that export's conv+BN folding lands on it), linear weights on the grid."""
    for twin in twins.values():
        if isinstance(twin, QConvBN):
            w, _ = twin.folded()
            q = fake_quant_weight(w)
            if twin.bn is not None:
                k, _ = _bn_factor(twin.bn)
                q = q / k.reshape(-1, 1, 1, 1)
            twin.conv.weight.copy_(q)
        elif isinstance(twin, QLinear):
            twin.linear.weight.copy_(fake_quant_weight(twin.linear.weight))
