"""The distill pass's section of the report, from result.json's ``student.distill``."""

from __future__ import annotations

from typing import Any

from edgekd.document.model import Section, Text, num


def distill_sections(student: dict[str, Any]) -> list[Section]:
    out: list[Section] = []
    distill = student.get("distill")
    if distill:
        masked = (distill.get("augment") or {}).get("mask")
        extra = (
            f" Each epoch {masked * 100:g}% of the tokens of every training text were masked anew; the student "
            "learned the teacher's answers on the masked copies."
            if masked
            else ""
        )
        out.append(
            Section(
                "Distillation",
                [
                    Text(
                        f"{len(distill['epochs'])} epochs on {distill['train_samples']:,} training samples in "
                        f"{distill['seconds']:.0f} s; best epoch {distill['best_epoch']} (val "
                        f"{num(distill['val_accuracy'])}%), test {num(distill['test_accuracy'])}%.{extra}"
                    )
                ],
            )
        )
    return out
