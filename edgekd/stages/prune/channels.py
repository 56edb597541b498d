"""Structured channel pruning with dependency groups (torch-pruning's DepGraph).

Channels coupled by residual adds, concatenations or depthwise convolutions are removed together, so the
pruned model stays consistent and is physically smaller (fewer channels in every exported runtime).
torch-pruning is needed only here, while pruning: the result reloads from its layer shapes
(:mod:`edgekd.models.shapes`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from edgekd.core.errors import ConfigError
from edgekd.core.optional import require

Importance = Literal["l1", "l2", "taylor", "bn_scale"]
_PIP = "pip install -c constraints.txt torch-pruning==1.6.1"


def _tp() -> Any:
    return require("torch_pruning", "the prune pass needs torch-pruning, which is not importable", _PIP)


def _importance(tp: Any, name: Importance) -> Any:
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.BNScaleImportance()


def find_layers(model: nn.Module, names: list[str], where: str) -> list[nn.Module]:
    """Modules of ``model`` named by path; ConfigError at ``where`` naming the unknown ones."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ConfigError(
            f"{where}: no layer {', '.join(repr(m) for m in missing)} in the student",
            fix="layer names are module paths (print(model) shows them), e.g. fc",
        )
    return [modules[n] for n in names]


def default_ignored(model: nn.Module) -> list[str]:
    """The classifier: the last Linear layer (its outputs are the classes and must not shrink)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1:]


class ChannelPruner:
    """Prunes ``model`` in place towards ``ratio`` of its channels in ``steps`` equal steps.

    ``ratio`` is the share of channels removed from every prunable group (torch-pruning's ``pruning_ratio``);
    ``global_pruning`` ranks groups against each other instead of removing the same share per layer.
    """

    def __init__(
        self,
        model: nn.Module,
        example: torch.Tensor,
        ratio: float,
        steps: int,
        importance: Importance = "l2",
        global_pruning: bool = False,
        round_to: int | None = None,
        ignored: list[nn.Module] | None = None,
    ) -> None:
        tp = _tp()
        self.model = model
        self.example = example
        self.importance = importance
        self.steps = steps
        self.done = 0
        self._pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=_importance(tp, importance),
            pruning_ratio=ratio,
            global_pruning=global_pruning,
            iterative_steps=steps,
            round_to=round_to,
            ignored_layers=ignored or [],
        )

    def step(self, gradient_batch: Callable[[], torch.Tensor] | None = None) -> None:
        """Remove the next share of channels. Taylor importance needs ``gradient_batch``: a callable returning a
        loss on a few real batches; its gradients are taken before ranking."""
        if self.importance == "taylor":
            if gradient_batch is None:
                raise ValueError("taylor importance needs a gradient batch")
            self.model.zero_grad(set_to_none=True)
            was = self.model.training
            self.model.train()
            gradient_batch().backward()
            self.model.train(was)
        self._pruner.step()
        self.model.zero_grad(set_to_none=True)
        self.done += 1
