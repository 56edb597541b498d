"""The accuracy guard of compression passes: ``constraints.max_accuracy_drop`` points below the teacher.

Passes compare on the validation split (choosing models by the test split would leak it); the report gives
test accuracy. When a pass cannot meet the guard it saves its most accurate model and raises the
:class:`~edgekd.core.errors.AccuracyGuardError` of :meth:`Guard.failure`; the manager then writes the manifest,
``result.failed.json`` and ``report.failed.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.core.errors import AccuracyGuardError
from edgekd.pipeline.context import Context


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

    def failure(self, pass_name: str, best_accuracy: float, best_what: str, saved: list[str]) -> AccuracyGuardError:
        """The error a pass raises when it cannot meet the guard; ``saved`` are the files it wrote anyway."""
        message = (
            f"{pass_name}: cannot meet {self.describe()}; the best reached was {best_accuracy:.2f}% ({best_what}), "
            f"{self.teacher_accuracy - best_accuracy:.2f} points below the teacher"
        )
        return AccuracyGuardError(
            message,
            fix="raise constraints.max_accuracy_drop, prune/quantize less, or train longer",
            best_accuracy=best_accuracy,
            saved=saved,
        )


def guard_of(ctx: Context, enabled: bool = True) -> Guard | None:
    """The guard of this compile, or None when disabled or model.yaml sets no ``constraints.max_accuracy_drop``."""
    drop = ctx.config.constraints.max_accuracy_drop
    teacher = ctx.metrics.get("teacher", {}).get("val_accuracy")
    if not enabled or drop is None or teacher is None or teacher != teacher:  # NaN: no validation split
        return None
    return Guard(float(teacher), float(drop))
