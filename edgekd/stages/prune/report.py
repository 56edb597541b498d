"""The prune pass's section of the report, from result.json's ``student.prune``."""

from __future__ import annotations

from typing import Any

from edgekd.document.model import Section, Text, num


def prune_sections(student: dict[str, Any]) -> list[Section]:
    out: list[Section] = []
    prune = student.get("prune")
    if prune:
        out.append(
            Section(
                "Pruning",
                [
                    Text(
                        f"{prune['importance']} channel pruning to ratio {prune['kept_ratio']} (step "
                        f"{prune['kept_step']} of {prune['steps_planned']}, {prune['stopped']}): "
                        f"{prune['params']:,} params, {prune['macs']:,} MACs, test {num(prune['test_accuracy'])}%."
                    )
                ],
            )
        )
    return out
