"""Layer pairs between student and teacher: name checks and forward hooks that capture outputs."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn


def layer_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


def check_layer(model: nn.Module, name: str, where: str, which: str) -> str | None:
    """None if ``name`` is a module path of ``model``, else a 'where: problem' line with nearby valid names."""
    names = layer_names(model)
    if name in names:
        return None
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    top = [n for n in names if "." not in n]
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return f"{where}: no layer {name!r} in the {which}; {hint}top-level layers: {', '.join(top)}"


@contextmanager
def capture(model: nn.Module, names: set[str], store: dict[str, Any]) -> Iterator[None]:
    """While active, every forward of ``model`` puts the outputs of the named modules in ``store``."""
    modules = dict(model.named_modules())
    hooks = []
    for name in names:

        def hook(_m: nn.Module, _i: object, out: Any, name: str = name) -> None:
            store[name] = out

        hooks.append(modules[name].register_forward_hook(hook))
    try:
        yield
    finally:
        for h in hooks:
            h.remove()
