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


def _torchvision(name: str) -> Builder:
    import torchvision.models

    def build_it(**params: Any) -> nn.Module:
        return torchvision.models.get_model(name, **{"weights": None, **params})

    if name not in torchvision.models.list_models():
        raise ImportError(f"torchvision {torchvision.__version__} has no model {name!r}")
    return build_it


def _timm(name: str) -> Builder:
    import timm

    def build_it(**params: Any) -> nn.Module:
        return timm.create_model(name, **{"pretrained": False, **params})

    if not timm.is_model(name):
        raise ImportError(f"timm {timm.__version__} has no model {name!r}")
    return build_it


#: ``arch: "torchvision:resnet18"`` / ``"timm:resnet18"``: an architecture of an installed model library (its
#: weights come from ``checkpoint:``; pretrained downloads are refused: a compile must not reach the internet)
LIBRARIES: dict[str, Callable[[str], Builder]] = {"torchvision": _torchvision, "timm": _timm}
DOWNLOADS = {"torchvision": ("weights", None), "timm": ("pretrained", False)}


def resolve(arch: str) -> Builder:
    """The builder of a zoo name, of a model library's architecture (``torchvision:<name>``, ``timm:<name>``) or
    of ``package.module:function`` (imported here, on demand)."""
    library, _, name = arch.partition(":")
    if library in LIBRARIES:
        return LIBRARIES[library](name)
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
    library = arch.partition(":")[0]
    if library in DOWNLOADS:
        key, off = DOWNLOADS[library]
        if (params or {}).get(key, off) not in (off, None, False):
            raise ValueError(
                f"{key}={params[key]!r} downloads weights from the internet; leave it out and give the weights as "  # type: ignore[index]
                "checkpoint: (a state_dict file)"
            )
    model = resolve(arch)(**(params or {}))
    if not isinstance(model, nn.Module):
        raise TypeError(f"{arch} returned {type(model).__name__}, not a torch.nn.Module")
    return model


__all__ = ["CifarResNet", "MobileNetLike", "build", "mobilenet", "names", "register", "resnet"]
