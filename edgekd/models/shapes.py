"""Layer shapes of a pruned model, and rebuilding that model from them without the pruning library.

A pruned model is its original architecture with narrower Conv2d / BatchNorm2d / Linear layers. Recording
each such layer's sizes (``{"layer1.0.conv1": [in, out, groups], "layer1.0.bn1": [features],
"fc": [in, out]}``) lets :func:`apply_shapes` rebuild it from the architecture's builder: each listed layer is
replaced by a fresh one of the recorded size, then the state_dict (tensors only) loads into it.
"""

from __future__ import annotations

from torch import nn

Shapes = dict[str, list[int]]


def layer_shapes(model: nn.Module) -> Shapes:
    """Sizes of every Conv2d, BatchNorm2d and Linear of ``model``, by module path."""
    out: Shapes = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = [m.in_channels, m.out_channels, m.groups]
        elif isinstance(m, nn.BatchNorm2d):
            out[name] = [m.num_features]
        elif isinstance(m, nn.Linear):
            out[name] = [m.in_features, m.out_features]
    return out


def changed_shapes(before: Shapes, after: Shapes) -> Shapes:
    """The entries of ``after`` that differ from ``before`` (what a pruned spec needs to record)."""
    return {k: v for k, v in after.items() if before.get(k) != v}


def _resized(m: nn.Module, size: list[int]) -> nn.Module:
    if isinstance(m, nn.Conv2d):
        in_ch, out_ch, groups = size
        return nn.Conv2d(
            in_ch,
            out_ch,
            m.kernel_size,  # type: ignore[arg-type]
            m.stride,  # type: ignore[arg-type]
            m.padding,  # type: ignore[arg-type]
            m.dilation,  # type: ignore[arg-type]
            groups,
            bias=m.bias is not None,
            padding_mode=m.padding_mode,
        )
    if isinstance(m, nn.BatchNorm2d):
        return nn.BatchNorm2d(size[0], m.eps, m.momentum, m.affine, m.track_running_stats)
    if isinstance(m, nn.Linear):
        return nn.Linear(size[0], size[1], bias=m.bias is not None)
    raise TypeError(f"cannot resize a {type(m).__name__}")


def apply_shapes(model: nn.Module, shapes: Shapes) -> nn.Module:
    """Replace each layer named in ``shapes`` by one of the recorded size (in place; returns ``model``).

    Raises ValueError naming the layer when ``shapes`` lists a module the model lacks or cannot resize.
    """
    modules = dict(model.named_modules())
    for name, size in shapes.items():
        m = modules.get(name)
        if m is None:
            raise ValueError(f"shapes lists layer {name!r}, which the architecture does not have")
        expected = 3 if isinstance(m, nn.Conv2d) else 1 if isinstance(m, nn.BatchNorm2d) else 2
        if not isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.Linear):
            raise ValueError(f"shapes lists layer {name!r}, a {type(m).__name__}: only Conv2d/BatchNorm2d/Linear")
        if len(size) != expected or any(int(s) < 1 for s in size):
            raise ValueError(f"shapes.{name}: expected {expected} positive sizes, got {size}")
        parent_name, _, attr = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, attr, _resized(m, [int(s) for s in size]))
    return model
