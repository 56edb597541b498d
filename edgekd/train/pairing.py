"""Layer pairs between student and teacher: name checks and forward hooks that capture outputs."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: the query, key and value projections of the attention modules edgekd recognises (BERT-family, DistilBERT, most
#: decoder models); an attention module holds one such triple of ``nn.Linear`` children
PROJECTION_NAMES = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"), ("q_proj", "k_proj", "v_proj"))


@dataclass
class Projections:
    """The query, key and value projections an attention module computed in one forward (each B x L x width)."""

    heads: int
    q: torch.Tensor | None = None
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None

    def detach(self) -> Projections:
        return Projections(self.heads, *(t.detach() if t is not None else None for t in (self.q, self.k, self.v)))


def projections(module: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear] | None:
    """The (query, key, value) ``nn.Linear`` children of an attention module, or None when it has none."""
    for names in PROJECTION_NAMES:
        found = [getattr(module, n, None) for n in names]
        if all(isinstance(f, nn.Linear) for f in found):
            return found[0], found[1], found[2]  # type: ignore[return-value]
    return None


def attention_heads(module: nn.Module) -> int | None:
    """The number of heads of an attention module (the attribute Hugging Face modules or their config carry)."""
    for name in ("num_attention_heads", "num_heads", "n_heads"):
        value = getattr(module, name, None)
        if isinstance(value, int) and value > 0:
            return value
    config = getattr(module, "config", None)
    value = getattr(config, "num_attention_heads", None)
    return value if isinstance(value, int) and value > 0 else None


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
    """While active, every forward of ``model`` puts the outputs of the named modules in ``store``.

    A named attention module with query/key/value projections (:func:`projections`) is captured as the
    :class:`Projections` it computed, which is what attention-transfer terms (MiniLM) need: Hugging Face attention
    modules return neither their attention probabilities (under SDPA) nor their values."""
    modules = dict(model.named_modules())
    hooks: list[Any] = []
    for name in names:
        qkv = projections(modules[name])
        if qkv is not None:
            hooks += _capture_projections(modules[name], qkv, name, store)
            continue

        def hook(_m: nn.Module, _i: object, out: Any, name: str = name) -> None:
            store[name] = out

        hooks.append(modules[name].register_forward_hook(hook))
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def _capture_projections(
    module: nn.Module, qkv: tuple[nn.Linear, nn.Linear, nn.Linear], name: str, store: dict[str, Any]
) -> list[Any]:
    heads = attention_heads(module) or 1

    def start(_m: nn.Module, _args: object) -> None:
        store[name] = Projections(heads)

    def keep(field: str) -> Any:
        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            setattr(store[name], field, out)

        return hook

    return [module.register_forward_pre_hook(start)] + [
        lin.register_forward_hook(keep(f)) for lin, f in zip(qkv, ("q", "k", "v"), strict=True)
    ]
