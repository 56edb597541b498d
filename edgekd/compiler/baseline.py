"""The implicit first pass: measure the teacher (and the student as given) before anything changes them."""

from __future__ import annotations

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
        ctx.metrics["teacher"] = {
            "arch": ctx.config.teacher.arch,
            "params_spec": ctx.config.teacher.params,
            "params": count_params(t),
            "macs": count_macs(t, shape),
            "test_accuracy": accuracy(t, ctx.data.test),
            "val_accuracy": accuracy(t, ctx.data.val),
            "measured": f"PyTorch on host, test split ({len(ctx.data.test)} images)",
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
