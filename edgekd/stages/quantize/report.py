"""The quantize pass's section of the report (settings and the per-layer precision table), from result.json."""

from __future__ import annotations

from typing import Any

from edgekd.document.model import Section, Table, Text, num


def quantize_sections(student: dict[str, Any]) -> list[Section]:
    out: list[Section] = []
    quant = student.get("quantize")
    if quant and quant.get("precision") == "int8":
        out.append(
            Section(
                "Quantization",
                [
                    Text(
                        f"Static INT8, QDQ, {quant['activation_type']} activations, per-channel weights: "
                        f"{quant['per_channel']}, {quant['calibration_samples']} calibration images "
                        f"({quant['calibration_method']}); val accuracy {num(quant['val_accuracy'])}%."
                    )
                ],
            )
        )
        if quant.get("layers"):  # the per-layer precision table (fallback to fp32 where INT8 costs the guard)
            out[-1].blocks.append(
                Table(
                    ["layer", "op", "precision", "why", "val gain in fp32 (pt)"],
                    [
                        [x["module"] or x["node"], x["op"], x["precision"], x["reason"] or "-", num(x["sensitivity"])]
                        for x in quant["layers"]
                    ],
                )
            )
    return out
