"""Weight inheritance: initialise a student from the teacher where shapes allow (TinyCLIP-style).

Tensors with the same name and shape are copied. A narrower tensor (every dimension <= the
teacher's, same rank) takes the teacher's first channels along every dimension: one consistent
channel subset for convolutions, their batch norms and the next layer's inputs. (Picking the
channels with the largest L1 norm, as TinyCLIP does, needs the channel dependency graph so that
a batch norm and the next layer's inputs follow the same choice; that comes with the pruning
pass's dependency groups.) Everything else stays randomly initialised. Returns counts.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def inherit(student: nn.Module, teacher: nn.Module) -> dict[str, int]:
    t_state = teacher.state_dict()
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
            new_state[name] = t_val[tuple(slice(0, n) for n in s_val.shape)].clone()
            sliced += 1
        else:
            kept += 1
    student.load_state_dict(new_state, strict=False)
    return {"copied": copied, "sliced": sliced, "random": kept}
