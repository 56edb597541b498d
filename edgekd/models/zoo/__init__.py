"""Model zoo: architectures that configs name (``arch: resnet``, ``arch: mobilenet``) and build with ``params``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from edgekd.models.zoo.mobilenet import MobileNetLike, mobilenet
from edgekd.models.zoo.resnet import CifarResNet, resnet

Builder = Callable[..., nn.Module]

_REGISTRY: dict[str, Builder] = {"resnet": resnet, "mobilenet": mobilenet}


def register(name: str, builder: Builder) -> None:
    """Add an architecture under ``name`` (third-party code may extend the zoo)."""
    _REGISTRY[name] = builder


def names() -> list[str]:
    return sorted(_REGISTRY)


def resolve(arch: str) -> Builder:
    """The builder of a zoo name, or of ``package.module:function`` (imported here, on demand)."""
    if ":" in arch:
        module, _, func = arch.partition(":")
        builder = getattr(importlib.import_module(module), func, None)
        if builder is None:
            raise ImportError(f"module {module!r} has no attribute {func!r}")
        if not callable(builder):
            raise TypeError(f"{arch} is not callable")
        return builder
    return _REGISTRY[arch]


def build(arch: str, params: dict[str, Any] | None = None) -> nn.Module:
    """Build ``arch`` with keyword ``params``; raises ImportError/KeyError/TypeError/ValueError on bad input."""
    model = resolve(arch)(**(params or {}))
    if not isinstance(model, nn.Module):
        raise TypeError(f"{arch} returned {type(model).__name__}, not a torch.nn.Module")
    return model


__all__ = ["CifarResNet", "MobileNetLike", "build", "mobilenet", "names", "register", "resnet"]
