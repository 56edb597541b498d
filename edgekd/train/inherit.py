"""Weight inheritance: initialise a student from the teacher where shapes allow (TinyCLIP-style).

Tensors with the same name and shape are copied. A narrower tensor (every dimension <= the
teacher's, same rank) takes a subset of the teacher's channels. Which channels: the teacher's
channel dependency groups (torch-pruning's DepGraph: a convolution's outputs, its batch norm, the
next layers' inputs and every layer tied to them by a residual add) are ranked by the L1 norm of
all their weights, and the student keeps the largest ones, the same subset in every tensor of a
group so that the inherited layers still compute consistent features. Dimensions outside any
group (or every dimension when torch-pruning is not installed or cannot trace the teacher) take
the first channels. Everything else stays randomly initialised. Returns counts and the method.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# (module name, "out" | "in") -> teacher channel indices the student keeps
Selection = dict[tuple[str, str], torch.Tensor]


@torch.no_grad()
def inherit(student: nn.Module, teacher: nn.Module, example: torch.Tensor | None = None) -> dict[str, Any]:
    """Copy/slice teacher weights into ``student``; ``example`` (one input batch) enables L1 channel choice."""
    t_state = teacher.state_dict()
    selection, method = _l1_selection(student, teacher, example) if example is not None else ({}, "first-channels")
    owners = _owners(teacher)
    copied = sliced = kept = 0
    new_state = {}
    for name, s_val in student.state_dict().items():
        t_val = t_state.get(name)
        if t_val is None or t_val.dim() != s_val.dim():
            kept += 1
            continue
        if t_val.shape == s_val.shape:
            new_state[name] = t_val.clone()
            copied += 1
        elif s_val.is_floating_point() and all(s <= t for s, t in zip(s_val.shape, t_val.shape, strict=True)):
            new_state[name] = _slice(t_val, s_val.shape, owners.get(name), selection)
            sliced += 1
        else:
            kept += 1
    student.load_state_dict(new_state, strict=False)
    return {"copied": copied, "sliced": sliced, "random": kept, "channels": method}


def _slice(t_val: torch.Tensor, shape: torch.Size, owner: tuple[str, nn.Module] | None, selection: Selection) -> Any:
    out = t_val
    for dim, n in enumerate(shape):
        if out.shape[dim] == n:
            continue
        idx = None
        if owner is not None and dim <= 1:
            mod_name, mod = owner
            role = "out" if dim == 0 or isinstance(mod, nn.modules.batchnorm._BatchNorm) else "in"
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) and dim == 1:
                role = ""
            idx = selection.get((mod_name, role))
        if idx is None or len(idx) != n:
            idx = torch.arange(n)
        out = out.index_select(dim, idx.to(out.device))
    return out.clone()


def _owners(model: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    """state_dict key -> (module name, module) for parameters and buffers."""
    owners: dict[str, tuple[str, nn.Module]] = {}
    for mod_name, mod in model.named_modules():
        for key in list(mod._parameters) + list(mod._buffers):
            owners[f"{mod_name}.{key}" if mod_name else key] = (mod_name, mod)
    return owners


def _l1_selection(student: nn.Module, teacher: nn.Module, example: torch.Tensor) -> tuple[Selection, str]:
    try:
        import torch_pruning as tp
    except ImportError:
        return {}, "first-channels (torch-pruning not installed)"
    s_modules = dict(student.named_modules())
    t_names = {m: n for n, m in teacher.named_modules()}
    was = teacher.training
    # DepGraph traces the autograd graph: a frozen teacher (the distill pass freezes it) records none
    frozen = [p for p in teacher.parameters() if not p.requires_grad]
    try:
        with torch.enable_grad():
            for p in frozen:
                p.requires_grad_(True)
            dg = tp.DependencyGraph().build_dependency(teacher, example_inputs=example[:1])
    except Exception as exc:  # a graph torch-pruning cannot trace: fall back, but say why
        return {}, f"first-channels (dependency graph failed: {type(exc).__name__})"
    finally:
        for p in frozen:
            p.requires_grad_(False)
        teacher.zero_grad(set_to_none=True)
        teacher.train(was)
    importance = tp.importance.GroupMagnitudeImportance(p=1)
    selection: Selection = {}
    for name, t_mod in teacher.named_modules():
        s_mod = s_modules.get(name)
        if not isinstance(t_mod, (nn.Conv2d, nn.Linear)) or not isinstance(s_mod, type(t_mod)):
            continue
        if (name, "out") in selection or getattr(t_mod, "groups", 1) != 1:
            continue
        t_out, s_out = t_mod.weight.shape[0], s_mod.weight.shape[0]
        if s_out >= t_out:
            continue
        prune_out = tp.prune_conv_out_channels if isinstance(t_mod, nn.Conv2d) else tp.prune_linear_out_channels
        try:
            group = dg.get_pruning_group(t_mod, prune_out, idxs=list(range(t_out)))
        except ValueError:  # a layer the trace did not reach (unused in forward): first channels
            continue
        scores = importance(group)
        if scores is None or len(scores) != t_out:
            continue
        keep = torch.sort(torch.topk(scores, s_out).indices).values
        for dep, _ in group:
            mod = dep.target.module
            mod_name = t_names.get(mod)
            if mod_name is None:
                continue
            role = "out" if dep.handler.__name__ == "prune_out_channels" else "in"
            selection.setdefault((mod_name, role), keep)
    return selection, "l1-groups"
