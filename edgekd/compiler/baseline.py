"""The implicit first pass: measure the teacher (and the student as given) before anything changes them, and say
which split the accuracy guard's reference comes from."""

from __future__ import annotations

import json
from typing import Any

import torch

from edgekd.core.device import describe, on_device
from edgekd.models.count import count_macs, count_params
from edgekd.pipeline.context import Context
from edgekd.pipeline.stage import Pass
from edgekd.train.loop import accuracy


class Baseline(Pass):
    name = "baseline"
    produces = frozenset()

    def run(self, ctx: Context) -> None:
        shape = ctx.data.input_shape
        t = ctx.teacher
        with on_device(t, ctx.train_device):  # teacher inference runs where training does
            test_accuracy, val_accuracy = accuracy(t, ctx.data.test), accuracy(t, ctx.data.val)
        where = describe(torch.device(ctx.train_device))
        ctx.metrics["teacher"] = {
            "arch": ctx.config.teacher.arch,
            "params_spec": ctx.config.teacher.params,
            "params": count_params(t),
            "macs": count_macs(t, shape),
            "test_accuracy": test_accuracy,
            "val_accuracy": val_accuracy,
            "measured": f"PyTorch on {where}, test split ({len(ctx.data.test)} images)",
            "val_split": val_split(ctx),
        }
        ctx.stages.append(
            {
                "stage": "input",
                "model": "teacher fp32 (PyTorch)",
                "accuracy": ctx.metrics["teacher"]["test_accuracy"],
                "params": ctx.metrics["teacher"]["params"],
                "macs": ctx.metrics["teacher"]["macs"],
                "measured": "PyTorch on host, test split",
            }
        )
        if ctx.student is not None and ctx.student_spec is not None:
            ctx.metrics["student"] = {
                "arch": ctx.student_spec.arch,
                "params_spec": ctx.student_spec.params,
                "params": count_params(ctx.student),
                "macs": count_macs(ctx.student, shape),
            }
        ctx.metrics["data"] = ctx.data.describe()
        for n in ctx.data.notes:
            ctx.note(n)


def val_split(ctx: Context) -> dict[str, Any]:
    """The validation split (the accuracy guard's reference), and whether the teacher's record says it trained
    without it: a ``<checkpoint>.json`` next to the checkpoint whose ``held_out.sha256`` names the split (as
    examples/fashion-mnist/train_teacher.py writes). A record naming another split is noted: the reference may
    then be inflated by images the teacher learned."""
    split = ctx.data.val
    out: dict[str, Any] = {
        "images": len(split),
        "val_fraction": ctx.config.data.val_fraction,
        "seed": ctx.config.seed,
        "sha256": split.sha256(),
        "teacher_record": None,
        "held_out_by_teacher": None,
    }
    ckpt = ctx.config.teacher.checkpoint
    if ckpt is None or not len(split):
        return out
    record = (ckpt if ckpt.is_absolute() else ctx.config.base_dir / ckpt).with_suffix(".json")
    try:
        held = json.loads(record.read_text()).get("held_out") or {}
    except (OSError, ValueError, AttributeError):
        return out
    out["teacher_record"] = str(record)
    if "sha256" in held:
        out["held_out_by_teacher"] = held["sha256"] == out["sha256"]
        if not out["held_out_by_teacher"]:
            ctx.note(
                f"accuracy guard: {record.name} says the teacher was trained without another validation split "
                f"than this compile's ({len(split)} images, data.val_fraction {ctx.config.data.val_fraction}, "
                f"seed {ctx.config.seed}); if it trained on these images its reference accuracy is inflated"
            )
    return out
