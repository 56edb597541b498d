"""Students cut out of an image teacher: its own architecture, narrower per stage and without some of its repeated
blocks, every remaining weight the teacher's (``student.arch: shrink`` with an image teacher; ``search.space:
{type: shrink}`` searches them).

The teacher is read by one forward pass with hooks, so any traceable CNN works (torchvision-style ResNets and
MobileNets, EfficientNet-Lite0, a user's plain ``nn.Sequential``):

* **stages** are the resolution levels the convolutions write, in call order: a convolution whose output map is
  smaller than the current one opens the next stage; 1 x 1 maps (squeeze-excitation, pooled heads) stay in the
  stage they are called from;
* a **removable block** is a module holding convolutions whose output has exactly its input's shape and whose
  parent holds another module of the same class (a repeated block: a residual block that keeps its width and
  resolution, an MBConv with its skip); the innermost such module counts (a block, not a stage of blocks), never
  one called twice;
* a student keeps ``widths[s]`` of the channels of stage ``s`` (structured pruning with dependency groups from
  torch-pruning: channels coupled by residual adds, depthwise convolutions or concatenations go together, and
  the ones with the largest L1 norm stay) after its last ``drop[s]`` removable blocks of that stage are
  replaced by :class:`Skip` (the identity). The classifier keeps its outputs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgekd.core.errors import ModelError
from edgekd.core.optional import require

_PIP = "pip install -c constraints.txt torch-pruning==1.6.1"
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class Skip(nn.Module):
    """What a dropped block becomes: its input, unchanged (extra arguments of the block's call are ignored)."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return x


@dataclass(frozen=True)
class Anatomy:
    """What a teacher offers to shrink: its stages (by the names of their convolutions) and, per stage, its
    removable blocks in call order."""

    stages: list[list[str]]
    removable: list[list[str]]

    def describe(self) -> dict[str, Any]:
        return {
            "stages": len(self.stages),
            "convolutions_per_stage": [len(s) for s in self.stages],
            "removable_blocks_per_stage": [len(r) for r in self.removable],
            "removable_blocks": self.removable,
        }


def _has_conv(m: nn.Module) -> bool:
    return any(isinstance(x, _CONV) for x in m.modules())


def anatomy(model: nn.Module, example: torch.Tensor, key: str = "teacher") -> Anatomy:
    """The stages and removable blocks of ``model`` on ``example`` (one sample is enough)."""
    names = {m: n for n, m in model.named_modules()}
    calls: dict[str, int] = {}
    conv_out: list[tuple[str, tuple[int, ...]]] = []
    same_shape: dict[str, int] = {}  # block name -> position of its first convolution, where output == input shape
    starts: dict[str, int] = {}

    def pre_hook(mod: nn.Module, _inp: Any) -> None:
        starts.setdefault(names[mod], len(conv_out))

    def hook(mod: nn.Module, inp: Any, out: Any) -> None:
        name = names[mod]
        calls[name] = calls.get(name, 0) + 1
        if calls[name] > 1:
            return
        if isinstance(mod, _CONV) and isinstance(out, torch.Tensor) and out.dim() >= 3:
            conv_out.append((name, tuple(out.shape[2:])))
        elif (
            name
            and not isinstance(mod, _CONV)
            and isinstance(out, torch.Tensor)
            and len(inp) == 1
            and isinstance(inp[0], torch.Tensor)
            and inp[0].shape == out.shape
            and _has_conv(mod)
        ):
            same_shape[name] = starts[name]

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    handles += [m.register_forward_pre_hook(pre_hook) for m in model.modules()]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example[:1])
    except Exception as exc:  # any failure of the forward is reported with its cause
        raise ModelError(
            f"{key}: cannot run one example through the model to find its stages ({type(exc).__name__}: {exc})",
            fix="check data.input_shape against the model's input",
        ) from exc
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    if not conv_out:
        raise ModelError(
            f"{key}: no convolution runs in its forward pass, so it has no stages to shrink",
            fix="student.arch shrink (image teachers) cuts CNNs; pick a zoo student or your own builder instead",
        )
    stages: list[list[str]] = []
    stage_at: list[int] = []  # per conv call position, its stage
    current: tuple[int, ...] | None = None
    for name, size in conv_out:
        area = math.prod(size)
        if current is None or (area > 1 and area < math.prod(current)):
            stages.append([])
            current = size
        stages[-1].append(name)
        stage_at.append(len(stages) - 1)
    modules = dict(model.named_modules())
    registered: dict[int, set[str]] = {}  # every name each module object is registered under
    for n, m in model.named_modules(remove_duplicate=False):
        registered.setdefault(id(m), set()).add(n)
    blocks = []
    for name in same_shape:
        inside = [m for _, m in modules[name].named_modules()]
        if calls.get(name, 0) != 1 or any(
            not all(n == name or n.startswith(name + ".") for n in registered[id(m)]) for m in inside
        ):
            continue  # called twice, or shares a module with the rest of the model: removing it changes more
        parent, _, child = name.rpartition(".")
        if any(type(m) is type(modules[name]) for n, m in modules[parent].named_children() if n != child):
            blocks.append(name)  # a repeated block
    removable: list[list[str]] = [[] for _ in stages]
    for name in sorted(blocks, key=lambda b: same_shape[b]):
        if not any(other.startswith(name + ".") for other in blocks):  # the innermost: a block, not a stage of them
            removable[stage_at[same_shape[name]]].append(name)
    return Anatomy(stages, removable)


def _per_stage(value: Any, n: int, name: str, key: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        return [value] * n
    if len(value) != n:
        raise ModelError(
            f"{key}.params.{name}: {len(value)} values for a teacher with {n} stages",
            fix=f"give one value per stage ({n}), or a single value for all of them",
        )
    return list(value)


def shrink_image(teacher: nn.Module, params: dict[str, Any], key: str = "student") -> nn.Module:
    """A copy of ``teacher`` shrunk as ``params`` says: ``input_shape`` ([C, H, W], required), ``widths`` (share
    of channels kept per stage, or one share for all, in (0, 1]; default 1), ``drop`` (removable blocks dropped
    per stage, from the last; default 0), ``round_to`` (channel counts a multiple of this)."""
    unknown = sorted(set(params) - {"input_shape", "widths", "drop", "round_to"})
    if unknown:
        raise ModelError(
            f"{key}.params: unknown key(s) {', '.join(unknown)} for an image shrink",
            fix="an image teacher is shrunk with input_shape, widths, drop and round_to",
        )
    if "input_shape" not in params:
        raise ModelError(
            f"{key}.params.input_shape: an image shrink needs the input shape to trace the teacher",
            fix="set it to data.input_shape, e.g. input_shape: [3, 224, 224]",
        )
    example = torch.zeros(1, *[int(v) for v in params["input_shape"]])
    model = copy.deepcopy(teacher).cpu()
    body = anatomy(model, example, "teacher")
    n = len(body.stages)
    widths = [float(w) for w in _per_stage(params.get("widths", 1.0), n, "widths", key)]
    drops = [int(d) for d in _per_stage(params.get("drop", 0), n, "drop", key)]
    for s, (w, d) in enumerate(zip(widths, drops, strict=True)):
        if not 0 < w <= 1:
            raise ModelError(f"{key}.params.widths: stage {s} keeps {w} of its channels", fix="give shares in (0, 1]")
        if not 0 <= d <= len(body.removable[s]):
            raise ModelError(
                f"{key}.params.drop: stage {s} has {len(body.removable[s])} removable block(s), asked to drop {d}",
                fix=f"drop at most {[len(r) for r in body.removable]} per stage",
            )
    modules = dict(model.named_modules())
    for s, d in enumerate(drops):
        for name in body.removable[s][len(body.removable[s]) - d :] if d else []:
            parent, _, child = name.rpartition(".")
            setattr(modules[parent], child, Skip())
    if any(w < 1 for w in widths):
        _prune(model, example, body, widths, params.get("round_to"), key)
    model.eval()
    return model


def _prune(
    model: nn.Module, example: torch.Tensor, body: Anatomy, widths: Sequence[float], round_to: Any, key: str
) -> None:
    tp = require("torch_pruning", "student.arch shrink (image teachers) needs torch-pruning", _PIP)
    modules = dict(model.named_modules())
    ratios = {
        modules[name]: 1.0 - w
        for stage, w in zip(body.stages, widths, strict=True)
        for name in stage
        if name in modules and w < 1  # convolutions of dropped blocks are gone
    }
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.GroupMagnitudeImportance(p=1),
            pruning_ratio=0.0,
            pruning_ratio_dict=ratios,
            round_to=int(round_to) if round_to else None,
            ignored_layers=linears[-1:],  # the classifier keeps its outputs
        )
        pruner.step()
    except Exception as exc:  # the tracer fails on some graphs: say why
        raise ModelError(
            f"{key}: torch-pruning cannot trace the teacher to narrow it ({type(exc).__name__}: {exc})",
            fix="shrink with widths: 1.0 (blocks only), or pick a zoo student",
        ) from exc
