"""The ``loss:`` mapping of a config: named terms (:data:`edgekd.train.losses.TERMS`), each a weight or a mapping
``{weight, pairs, <the term's options>}``, validated into ``{name: {"weight": float, ...}}`` for the objective."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from edgekd.core.schema import Strict, did_you_mean
from edgekd.train.losses import TERMS


class LayerPair(Strict):
    student: str
    teacher: str


def term_settings(name: str, value: Any) -> dict[str, Any]:
    """Validate one loss entry: a number (its weight) or a mapping with weight, pairs and the term's options."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = {"weight": value}
    if not isinstance(value, dict):
        raise ValueError(f"{name}: give a weight (number) or a mapping {{weight: ..., ...}}, not {value!r}")
    settings = dict(value)
    weight = settings.pop("weight", 1.0)
    if not isinstance(weight, int | float) or isinstance(weight, bool) or weight < 0:
        raise ValueError(f"{name}.weight: must be a number >= 0, got {weight!r}")
    builder, needs_pairs = TERMS[name]
    allowed = [p for p in inspect.signature(builder).parameters if p != "pairs"]
    if needs_pairs:
        pairs = settings.pop("pairs", None)
        if not pairs:
            raise ValueError(f"{name}.pairs: required, e.g. [{{student: layer3, teacher: layer3}}]")
        settings["pairs"] = [LayerPair.model_validate(p).model_dump() for p in pairs]
    for key, v in settings.items():
        if key != "pairs" and key not in allowed:
            raise ValueError(
                f"{name}.{key}: unknown option{did_you_mean(key, allowed)}; "
                f"options: weight{', pairs' if needs_pairs else ''}{''.join(', ' + a for a in allowed)}"
            )
        if key != "pairs" and (not isinstance(v, int | float) or isinstance(v, bool)):
            raise ValueError(f"{name}.{key}: must be a number, got {v!r}")
    return {"weight": float(weight), **settings}


def validate_loss(
    loss: dict[str, Any], terms: Sequence[str], example: str, unknown: Callable[[str], str]
) -> dict[str, Any]:
    """``loss`` checked term by term: each name one of ``terms`` (else ValueError ``unknown(name)``), its settings
    as :func:`term_settings` says, and at least one weight above 0. ``example`` shows a valid mapping."""
    if not loss:
        raise ValueError(f"loss: name at least one term, e.g. {example}")
    out = {}
    for name, value in loss.items():
        if name not in terms:
            raise ValueError(unknown(name))
        out[name] = term_settings(name, value)
    if not any(t["weight"] > 0 for t in out.values()):
        raise ValueError("every term has weight 0")
    return out
