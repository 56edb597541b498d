"""Where a classifier's parts are, found by forward hooks rather than attribute names, so any model works.

* the classifier: the last ``nn.Linear`` the forward calls, whose output must be the model's output (the logits);
* the feature map: the input of the last global pooling module before the classifier (one that pools a map with
  more than one position down to one), else the last module output before the classifier with more than one
  position (N, C, H, W).

A model may name them instead (``teacher.taps: {features: layer4, classifier: fc}`` in model.yaml): the output of
the ``features`` module, the ``classifier`` module. A tap that cannot be found is a :class:`ModelError` listing the
modules that could be it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgekd.core.errors import ModelError

#: attribute a model built from model.yaml carries when it names its taps ({"features": ..., "classifier": ...})
NAMED = "edgekd_taps"
_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.MaxPool2d)


@dataclass
class Tapped:
    """One forward pass seen through the taps."""

    logits: torch.Tensor  # (N, K): the model's output, which is the classifier's output
    pooled: torch.Tensor  # (N, C): the classifier's input
    features: torch.Tensor  # (N, C, H, W): the feature map before global pooling
    classifier: nn.Linear


def _spatial(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[2] * t.shape[3] > 1


def run_tapped(model: nn.Module, x: torch.Tensor, what: str = "model") -> Tapped:
    """Run ``model`` on ``x`` and return its logits, the classifier's input and the pre-pool feature map."""
    named: dict[str, str] = getattr(model, NAMED, None) or {}
    calls: list[tuple[str, nn.Module, Any, Any]] = []
    modules = dict(model.named_modules())
    for key in ("features", "classifier"):
        if named.get(key) and named[key] not in modules:
            raise ModelError(
                f"{what}.taps.{key}: {named[key]!r} is not a module of {type(model).__name__}",
                fix=f"name one of its modules (e.g. {', '.join(list(modules)[1:6])}, ...)",
            )

    def hook(path: str) -> Any:
        def record(m: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
            calls.append((path, m, inputs[0] if inputs else None, out))

        return record

    handles = [m.register_forward_hook(hook(p)) for p, m in modules.items() if p]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    linears = [i for i, (p, m, _, _) in enumerate(calls) if isinstance(m, nn.Linear)]
    if named.get("classifier"):
        linears = [i for i in linears if calls[i][0] == named["classifier"]]
    if not linears:
        found = [p for p, m, _, _ in calls if isinstance(m, nn.Linear)]
        raise ModelError(
            f"{what} {type(model).__name__}: no nn.Linear classifier is called in forward"
            + (f" under the name {named['classifier']!r}" if named.get("classifier") else ""),
            fix=f"name it with {what}.taps.classifier"
            + (f" (linear layers called: {', '.join(found)})" if found else ""),
        )
    ci = linears[-1]
    cpath, classifier, pooled, cls_out = calls[ci]
    if not isinstance(logits, torch.Tensor) or (cls_out is not logits and not torch.equal(cls_out, logits)):
        raise ModelError(
            f"{what} {type(model).__name__}: the output of its last linear layer {cpath!r} is not the model's output",
            fix=f"name the layer that gives the logits with {what}.taps.classifier",
        )
    features = None
    if named.get("features"):
        hits = [out for p, _, _, out in calls if p == named["features"]]
        features = hits[-1] if hits else None
    else:
        for _, m, inp, out in reversed(calls[:ci]):  # a global pooling module: its input
            if isinstance(m, _POOLS) and _spatial(inp) and isinstance(out, torch.Tensor) and not _spatial(out):
                features = inp
                break
        if features is None:
            features = next((out for _, _, _, out in reversed(calls[:ci]) if _spatial(out)), None)
    if not _spatial(features):
        maps = [p for p, _, _, out in calls[:ci] if _spatial(out)]
        raise ModelError(
            f"{what} {type(model).__name__}: no feature map (N, C, H, W) before its classifier {cpath!r}",
            fix=f"name the module whose output is the map before pooling with {what}.taps.features"
            + (f" (candidates: {', '.join(maps[-5:])})" if maps else ""),
        )
    assert isinstance(classifier, nn.Linear) and isinstance(features, torch.Tensor)
    return Tapped(logits, pooled, features, classifier)


def classifier_of(model: nn.Module, x: torch.Tensor, what: str = "model") -> nn.Linear:
    """The classifier module (one forward pass on ``x`` finds it)."""
    with torch.no_grad():
        return run_tapped(model, x, what).classifier
