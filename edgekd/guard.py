"""The accuracy guard of compression passes: ``constraints.max_accuracy_drop`` points below the teacher.

Passes compare on the validation split (choosing models by the test split would leak it); the report gives
test accuracy. When a pass cannot meet the guard, :func:`fail` saves what it has (manifest,
``result.failed.json`` with the failure, ``report.failed.md``) and raises
:class:`~edgekd.errors.AccuracyGuardError` naming the best accuracy reached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edgekd.errors import AccuracyGuardError
from edgekd.pipeline import Context, write_manifest


@dataclass(frozen=True)
class Guard:
    teacher_accuracy: float  # validation split, percent
    max_drop: float  # points

    @property
    def floor(self) -> float:
        return self.teacher_accuracy - self.max_drop

    def ok(self, accuracy: float) -> bool:
        return accuracy >= self.floor - 1e-9

    def describe(self) -> str:
        return (
            f"constraints.max_accuracy_drop {self.max_drop:g} points: validation accuracy >= {self.floor:.2f}% "
            f"(teacher {self.teacher_accuracy:.2f}%)"
        )


def guard_of(ctx: Context, enabled: bool = True) -> Guard | None:
    """The guard of this compile, or None when disabled or model.yaml sets no ``constraints.max_accuracy_drop``."""
    drop = ctx.config.constraints.max_accuracy_drop
    teacher = ctx.metrics.get("teacher", {}).get("val_accuracy")
    if not enabled or drop is None or teacher is None or teacher != teacher:  # NaN: no validation split
        return None
    return Guard(float(teacher), float(drop))


def fail(ctx: Context, pass_name: str, guard: Guard, best_accuracy: float, best_what: str, saved: list[str]) -> None:
    """Write the manifest, result.json and report.md of the run as it stands, then raise AccuracyGuardError."""
    from edgekd.report.markdown import render_markdown
    from edgekd.report.result import build_result

    message = (
        f"{pass_name}: cannot meet {guard.describe()}; the best reached was {best_accuracy:.2f}% ({best_what}), "
        f"{guard.teacher_accuracy - best_accuracy:.2f} points below the teacher"
    )
    ctx.note(f"{message}. Saved anyway: {', '.join(saved)}")
    records = [*ctx.records, {"pass": pass_name, "status": "failed", "seconds": 0.0, "key": "-", "error": message}]
    write_manifest(ctx, records)
    result = build_result(ctx, records)
    result["failed"] = {
        "pass": pass_name,
        "error": "AccuracyGuardError",
        "message": message,
        "best_accuracy_val": best_accuracy,
        "saved": saved,
    }
    # named *.failed.*: pipelines take result.json's presence as "the compile finished"
    with ctx.artifact("report_failed_md", "report.failed.md", "markdown", precision="-", backend="-") as tmp:
        tmp.write_text(render_markdown(result))
    with ctx.artifact("result_failed_json", "result.failed.json", "json", precision="-", backend="-") as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    write_manifest(ctx, records)
    saved = [*saved, "result.failed.json", "report.failed.md"]
    raise AccuracyGuardError(
        message,
        fix=f"raise constraints.max_accuracy_drop, prune/quantize less, or train longer; the best model is in "
        f"{ctx.run_dir} ({', '.join(saved)})",
        best_accuracy=best_accuracy,
        saved=saved,
    )
