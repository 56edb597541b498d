"""Render ``report.md`` from a ``result.json`` document (so ``edgekd report`` can re-render any run)."""

from __future__ import annotations

from typing import Any


def _num(v: Any, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def _bytes(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 2**20:.2f} MB" if n >= 2**20 else f"{n / 1024:.1f} KB"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def _where(lat: dict[str, Any]) -> str:
    if not lat:
        return "not measured"
    return lat.get("where", "measured") if lat.get("measured", True) else f"predicted ({lat.get('where', '')})"


def render_markdown(r: dict[str, Any]) -> str:
    t, teacher, student = r["target"], r.get("teacher", {}), r.get("student", {})
    arts: dict[str, Any] = r.get("artifacts", {})
    lines = [f"# edgekd report: {r['config']['name']} → {t['name']}", ""]
    lines += [
        f"Run `{r['run_id']}`, {r['created']}, edgekd {r['edgekd_version']}. Target: {t['description'] or t['name']} "
        f"(backends {', '.join(t['backends'])}; precisions {', '.join(t['precisions'])}).",
        "",
    ]

    best = r.get("deployable")
    lines += ["## Summary", ""]
    t_lat = arts.get("teacher_onnx", {}).get("latency", {})
    rows = [
        [
            "teacher fp32",
            _num(teacher.get("test_accuracy")),
            f"{teacher.get('params', 0):,}",
            f"{teacher.get('macs', 0) / 1e6:.1f}M",
            _bytes(arts.get("teacher_onnx", {}).get("bytes")),
            _num(t_lat.get("p50_ms"), "{:.3f}"),
            "1.00×" if t_lat else "—",
        ]
    ]
    for name, a in arts.items():
        if name == "teacher_onnx":
            continue
        lat = a.get("latency", {})
        speed = lat.get("speedup_vs_teacher")
        rows.append(
            [
                f"student {a['precision']} (`{a['path']}`)",
                _num(a.get("accuracy")),
                f"{student.get('params', 0):,}",
                f"{student.get('macs', 0) / 1e6:.1f}M",
                _bytes(a["bytes"]),
                _num(lat.get("p50_ms"), "{:.3f}"),
                f"{speed:.2f}×" if speed else "—",
            ]
        )
    lines += _table(["model", "test acc %", "params", "MACs", "file", "p50 ms", "speed-up"], rows)
    if best:
        lines += [f"Deployable artifact: **`{arts[best['name']]['path']}`**.", ""]
    for name, c in r.get("constraints", {}).items():
        mark = "met" if c["met"] else "**NOT met**"
        lines.append(f"- constraint `{name}`: limit {c['limit']}, value {c['value']} ({c['artifact']}): {mark}")
    if r.get("constraints"):
        lines.append("")

    lines += ["## Artifacts", ""]
    rows = []
    for a in arts.values():
        p = a.get("parity")
        if p:
            parity = (
                f"max |Δ| {p['max_abs_diff']:.2e}"
                if p["mode"] == "exact"
                else f"top-1 {p['top1_agreement']:.1f}%, cos {p['cosine']:.4f}"
            ) + (" ✓" if p["passed"] else " ✗")
        else:
            parity = "—"
        rows.append(
            [
                f"`{a['path']}`",
                a["precision"],
                a["backend"],
                _bytes(a["bytes"]),
                f"`{a['sha256'][:12]}`",
                _num(a.get("accuracy")),
                parity,
            ]
        )
    lines += _table(["file", "precision", "backend", "size", "sha256", "test acc %", "parity vs PyTorch"], rows)

    lat_rows = []
    for a in arts.values():
        lat = a.get("latency")
        if lat:
            lat_rows.append(
                [
                    f"`{a['path']}`",
                    *(_num(lat.get(k), "{:.3f}") for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms")),
                    _num(lat.get("throughput"), "{:.0f}"),
                    _num(lat.get("init_ms"), "{:.1f}"),
                    _num(lat.get("peak_rss_mb"), "{:.0f}"),
                    _where(lat),
                ]
            )
    lines += ["## Latency", ""]
    if lat_rows:
        prof = r.get("profile") or {}
        lines += [
            f"Batch {prof.get('batch', 1)}, {prof.get('threads') or 'default'} threads; runs interleaved "
            "in rounds, so ratios between rows share the machine's noise.",
            "",
        ]
        lines += _table(
            ["file", "p50 ms", "p90", "p99", "mean", "std", "inf/s", "init ms", "peak RSS MB", "where"], lat_rows
        )
    else:
        lines += ["No latency was measured in this run (no profile pass).", ""]

    if r.get("stages"):
        lines += ["## Pass by pass", ""]
        rows = [
            [
                s["stage"],
                s["model"],
                _num(s.get("accuracy", s.get("accuracy_val"))) + (" (val)" if "accuracy_val" in s else ""),
                f"{s['params']:,}" if s.get("params") else "—",
                _bytes(s.get("bytes")),
                s.get("measured", ""),
            ]
            for s in r["stages"]
        ]
        lines += _table(["stage", "model", "acc %", "params", "size", "measured"], rows)

    distill = student.get("distill")
    if distill:
        lines += [
            "## Distillation",
            "",
            f"{len(distill['epochs'])} epochs on {distill['train_samples']:,} images in "
            f"{distill['seconds']:.0f} s; best epoch {distill['best_epoch']} (val {_num(distill['val_accuracy'])}%), "
            f"test {_num(distill['test_accuracy'])}%.",
            "",
        ]
    quant = student.get("quantize")
    if quant and quant.get("precision") == "int8":
        lines += [
            "## Quantization",
            "",
            f"Static INT8, QDQ, {quant['activation_type']} activations, per-channel "
            f"weights: {quant['per_channel']}, {quant['calibration_samples']} calibration images "
            f"({quant['calibration_method']}); val accuracy {_num(quant['val_accuracy'])}%.",
            "",
        ]
        if quant.get("layers"):  # the per-layer precision table (fallback to fp32 where INT8 costs the guard)
            lines += _table(
                ["layer", "op", "precision", "why", "val gain in fp32 (pt)"],
                [
                    [x["module"] or x["node"], x["op"], x["precision"], x["reason"] or "-", _num(x["sensitivity"])]
                    for x in quant["layers"]
                ],
            )
    prune = student.get("prune")
    if prune:
        lines += [
            "## Pruning",
            "",
            f"{prune['importance']} channel pruning to ratio {prune['kept_ratio']} (step {prune['kept_step']} of "
            f"{prune['steps_planned']}, {prune['stopped']}): {prune['params']:,} params, {prune['macs']:,} MACs, "
            f"test {_num(prune['test_accuracy'])}%.",
            "",
        ]

    lines += ["## Passes", ""]
    lines += _table(
        ["pass", "status", "seconds", "cache key"],
        [[p["pass"], p["status"], f"{p['seconds']:.1f}", f"`{p['key'][:12]}`"] for p in r.get("passes", [])],
    )
    d = r.get("data", {})
    if d:
        lines += [
            "## Data",
            "",
            f"{d.get('source')}: {d.get('train'):,} train / {d.get('val'):,} val / "
            f"{d.get('test'):,} test / {d.get('calibration')} calibration images, input {d.get('input_shape')}, "
            f"normalised with mean {d.get('normalize', {}).get('mean')} std {d.get('normalize', {}).get('std')} "
            "(apply the same on the device).",
            "",
        ]
    lines += ["## Not measured, fallbacks and notes", ""]
    lines += [f"- {n}" for n in r.get("notes", [])] or ["- none: every figure above was measured in this run."]
    env = r.get("environment", {})
    lines += ["", "## Environment", "", ", ".join(f"{k} {v}" for k, v in env.items()), ""]
    return "\n".join(lines)
