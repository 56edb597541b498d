"""Model zoo: architectures that configs name (``arch: resnet``) and build with ``params``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from edgekd.zoo.resnet import CifarResNet, resnet

Builder = Callable[..., nn.Module]

_REGISTRY: dict[str, Builder] = {"resnet": resnet}


def register(name: str, builder: Builder) -> None:
    """Add an architecture under ``name`` (third-party code may extend the zoo)."""
    _REGISTRY[name] = builder


def names() -> list[str]:
    return sorted(_REGISTRY)


def build(arch: str, params: dict[str, Any] | None = None) -> nn.Module:
    """Build ``arch`` with keyword ``params``; raises KeyError/TypeError/ValueError on bad input."""
    return _REGISTRY[arch](**(params or {}))


__all__ = ["CifarResNet", "build", "names", "register", "resnet"]
