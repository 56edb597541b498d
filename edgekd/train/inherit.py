"""Weight inheritance: initialise a student from the teacher where shapes allow (TinyCLIP-style).

Which teacher layer a student layer inherits from is found by structure, not by name: both models run one
example batch with forward hooks, each layer with weights is placed in its stage (the how-manyth spatial
resolution its output has, in call order; layers without a spatial output form the head) and, within the stage,
the student's layers are matched in call order to the teacher's next layer of the same kind (type, kernel size,
stride, depthwise or not) whose tensors the student's fit. A student that drops repeated blocks so inherits the
first blocks of each stage, and its downsampling layers take the teacher's downsampling layers even where
names index a flat list (``features.3``) that means another stage in the teacher. Without an example (or when
a model cannot run with hooks) layers are matched by name.

Tensors with the same shape are copied. A narrower tensor (every dimension <= the
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
    layers, mapping = (structural_map(student, teacher, example), "structure") if example is not None else ({}, "names")
    if example is not None and not layers:
        mapping = "names (the models could not be matched by structure)"
    t_state = teacher.state_dict()
    s_owners = _owners(student)
    eligible = {k for k, (_, m) in s_owners.items() if isinstance(m, _WEIGHTED)}
    # student key -> the teacher key it takes its values from, for the layers matched by structure
    source = {k: layers[n] + k[len(n) :] for k, (n, _) in s_owners.items() if n in layers}
    selection, method = (
        _l1_selection(student, teacher, example, layers) if example is not None else ({}, "first-channels")
    )
    owners = _owners(teacher)
    copied = sliced = kept = 0
    new_state = {}
    for name, s_val in student.state_dict().items():
        structural = layers and name in eligible  # a layer kind matched by structure: never by name
        t_val = t_state.get(source[name]) if name in source else (None if structural else t_state.get(name))
        if t_val is None or t_val.dim() != s_val.dim():
            kept += 1
            continue
        if t_val.shape == s_val.shape:
            new_state[name] = t_val.clone()
            copied += 1
        elif s_val.is_floating_point() and all(s <= t for s, t in zip(s_val.shape, t_val.shape, strict=True)):
            new_state[name] = _slice(t_val, s_val.shape, owners.get(source.get(name, name)), selection)
            sliced += 1
        else:
            kept += 1
    student.load_state_dict(new_state, strict=False)
    return {"copied": copied, "sliced": sliced, "random": kept, "channels": method, "layers": mapping}


_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.Embedding)


def _signature(m: nn.Module) -> tuple[Any, ...]:
    if isinstance(m, nn.modules.conv._ConvNd):
        depthwise = m.groups > 1 and m.groups == m.in_channels
        return (type(m).__name__, tuple(m.kernel_size), tuple(m.stride), depthwise)
    return (type(m).__name__,)


def _layers_in_stages(model: nn.Module, example: torch.Tensor) -> list[tuple[int, str, nn.Module]]:
    """(stage, name, module) of every layer with weights, in the order forward first calls them."""
    calls: list[tuple[str, nn.Module, tuple[int, ...] | None]] = []
    seen: set[str] = set()

    def hook(name: str) -> Any:
        def record(mod: nn.Module, _inp: Any, out: Any) -> None:
            if name not in seen and isinstance(out, torch.Tensor):
                seen.add(name)
                calls.append((name, mod, tuple(out.shape[2:]) if out.dim() >= 3 else None))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, _WEIGHTED)]
    was = model.training
    model.eval()
    try:
        model(example[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    levels: list[tuple[int, ...]] = []
    out: list[tuple[int, str, nn.Module]] = []
    for name, mod, size in calls:
        if size is None:
            stage = 1_000_000  # the head: after every spatial stage
        else:
            if not levels or levels[-1] != size:
                levels.append(size)
            stage = len(levels) - 1
        out.append((stage, name, mod))
    return out


def _fits(s_mod: nn.Module, t_mod: nn.Module) -> bool:
    s_state, t_state = s_mod.state_dict(), t_mod.state_dict()
    for key, s_val in s_state.items():
        t_val = t_state.get(key)
        if t_val is None or t_val.dim() != s_val.dim():
            return False
        if any(a > b for a, b in zip(s_val.shape, t_val.shape, strict=True)):
            return False
    return True


def structural_map(student: nn.Module, teacher: nn.Module, example: torch.Tensor) -> dict[str, str]:
    """Student layer name -> the teacher layer it inherits from (same stage, same kind, next in call order, a
    shape the student's fits in); {} when either model cannot run on ``example`` with hooks."""
    try:
        with torch.no_grad():
            s_layers, t_layers = _layers_in_stages(student, example), _layers_in_stages(teacher, example)
    except Exception:  # a model that does not run this way: matched by name (said in the result)
        return {}
    by_stage: dict[int, list[tuple[str, nn.Module]]] = {}
    for stage, name, mod in t_layers:
        by_stage.setdefault(stage, []).append((name, mod))
    # stages are matched from the first (the stem) and the head from the end, so that a student with fewer
    # resolution levels keeps its head and its early stages aligned
    spatial_s = sorted({st for st, _, _ in s_layers if st < 1_000_000})
    spatial_t = sorted(st for st in by_stage if st < 1_000_000)
    stage_of = {st: spatial_t[i] for i, st in enumerate(spatial_s) if i < len(spatial_t)}
    stage_of[1_000_000] = 1_000_000
    mapping: dict[str, str] = {}
    cursor: dict[int, int] = {}
    for stage, name, mod in s_layers:
        t_stage = stage_of.get(stage)
        candidates = by_stage.get(t_stage, []) if t_stage is not None else []
        start = cursor.get(stage, 0)
        for j in range(start, len(candidates)):
            t_name, t_mod = candidates[j]
            if _signature(t_mod) == _signature(mod) and _fits(mod, t_mod):
                mapping[name] = t_name
                cursor[stage] = j + 1
                break
    return mapping


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


def _l1_selection(
    student: nn.Module, teacher: nn.Module, example: torch.Tensor, layers: dict[str, str] | None = None
) -> tuple[Selection, str]:
    try:
        import torch_pruning as tp
    except ImportError:
        return {}, "first-channels (torch-pruning not installed)"
    s_modules = dict(student.named_modules())
    if layers:  # the student layer each teacher layer hands its weights to
        s_modules = {t: s_modules[s] for s, t in layers.items()}
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
