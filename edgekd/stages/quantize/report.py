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
                [Text(_summary(quant))],
            )
        )
        qat = quant.get("qat")
        if qat and qat.get("simulates"):
            text = (
                f"QAT ({qat['epochs']} epoch(s), KD from the teacher) simulated {qat['simulates']}: "
                f"{qat['layers_fake_quantized']} weighted layers, {qat['activations_fake_quantized']} activation "
                f"tensors, {qat['calibration']} ranges; fake-quantized val accuracy "
                f"{num(qat['val_accuracy_fake_quant_before'])}% before, {num(qat['val_accuracy_fake_quant_after'])}% "
                "after."
            )
            deployed = qat.get("deployed") or {}
            if deployed.get("compared"):
                d, g = deployed["vs_deployed"], deployed["vs_qdq_graph"]
                text += (
                    f" Simulation vs the INT8 file on {d['samples']} val images: top-1 agreement "
                    f"{num(d['top1_agreement'])}%, max |logit diff| {num(d['max_abs_logit_diff'])} in ONNX Runtime's "
                    f"kernels ({num(g['top1_agreement'])}%, {num(g['max_abs_logit_diff'])} against its QDQ graph "
                    "run operator by operator)."
                )
            elif deployed:
                text += f" Not compared with the INT8 file: {deployed['why']}."
            out[-1].blocks.append(Text(text))
        check = quant.get("latency_check")
        if check:
            if check.get("checked"):
                line = (
                    f"INT8 vs fp32 latency: {num(check['int8_ms'])} ms vs {num(check['fp32_ms'])} ms, batch 1 "
                    f"({check['where']})" + ("; INT8 is slower: ship fp32." if check.get("int8_slower") else ".")
                )
            else:
                line = f"INT8 vs fp32 latency: not checked ({check['why']})."
            out[-1].blocks.append(Text(line))
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


def _summary(quant: dict[str, Any]) -> str:
    if quant.get("method") == "dynamic":  # text models: no calibration
        return (
            f"Dynamic INT8 ({quant['format']}): int8 weights (per-channel: {quant['per_channel']}), activations "
            f"quantized at run time from their own ranges; val accuracy {num(quant['val_accuracy'])}%."
        )
    if "activation_type" not in quant:  # text models, static QDQ
        calib = quant.get("calibration") or {}
        return (
            f"Static INT8, QDQ, {quant['activations']} activations, per-channel weights: {quant['per_channel']}, "
            f"{calib.get('samples')} calibration texts ({calib.get('method')}); val accuracy "
            f"{num(quant['val_accuracy'])}%."
        )
    return (
        f"Static INT8, QDQ, {quant['activation_type']} activations, per-channel weights: "
        f"{quant['per_channel']}, {quant['calibration_samples']} calibration images "
        f"({quant['calibration_method']}); val accuracy {num(quant['val_accuracy'])}%."
    )
