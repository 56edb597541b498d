"""The report as a document: sections of text, tables, bullet lists and figures, rendered to Markdown or HTML.

Builders here read a ``result.json`` document (v1 or v2) so ``edgekd report`` can re-render any run; the latency
section is built from latency records alone so ``edgekd profile`` prints the same section for any model file.
Inline markup in text and cells: ``code`` and **bold** (both renderers understand them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgekd.report import svg

SOURCES = {
    "measured-device": "measured on the device",
    "measured-host": "measured on this host",
    "predicted": "predicted",
}


@dataclass
class Text:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Figure:
    svg: str
    caption: str


Block = Text | Table | Bullets | Figure


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section]


# --------------------------------------------------------------------------- formatting helpers


def num(v: Any, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def size(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 2**20:.2f} MB" if n >= 2**20 else f"{n / 1024:.1f} KB"


def count(v: Any) -> str:
    return f"{int(v):,}" if v else "—"


def mmacs(v: Any) -> str:
    return f"{v / 1e6:.1f}M" if v else "—"


def source_of(lat: dict[str, Any] | None) -> str | None:
    """measured-device, measured-host or predicted (v1 records lack ``source``)."""
    if not lat:
        return None
    if lat.get("source"):
        return str(lat["source"])
    if not lat.get("measured", True):
        return "predicted"
    return "measured-device" if str(lat.get("where", "")).startswith("device ") else "measured-host"


def source_text(lat: dict[str, Any] | None) -> str:
    src = source_of(lat)
    if src is None:
        return "not measured"
    on = " (the target)" if src == "measured-host" and lat and lat.get("on_target") else ""
    return SOURCES.get(src, src) + on


# --------------------------------------------------------------------------- latency (shared with edgekd profile)


def latency_sections(latencies: list[tuple[str, dict[str, Any]]], context: str = "") -> list[Section]:
    """Latency table, distribution figure and per-layer top-k for (label, latency record) pairs."""
    sec = Section("Latency")
    if context:
        sec.blocks.append(Text(context))
    if not latencies:
        sec.blocks.append(Text("No latency was measured in this run (no profile pass)."))
        return [sec]
    rows = []
    for label, lat in latencies:
        pred = lat.get("predicted") or {}
        rows.append(
            [
                label,
                *(num(lat.get(k), "{:.3f}") for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms")),
                num(lat.get("throughput"), "{:.0f}"),
                num(lat.get("init_ms"), "{:.1f}"),
                num(lat.get("peak_rss_mb"), "{:.0f}"),
                f"**{source_text(lat)}**",
                lat.get("where", ""),
                num(pred.get("p50_ms"), "{:.3f}") if pred else "—",
            ]
        )
    header = ["model", "p50 ms", "p90", "p99", "mean", "std", "inf/s", "init ms", "peak RSS MB", "source", "where"]
    sec.blocks.append(Table([*header, "predicted p50 on target"], rows))
    measured = [(label, lat) for label, lat in latencies if lat.get("p50_ms") is not None and lat.get("measured", True)]
    if measured:
        sec.blocks.append(
            Figure(
                svg.ranges([(label.strip("`"), lat) for label, lat in measured], "Latency distribution per artifact"),
                "Latency distribution of each artifact over its timed runs (min-max, p50-p90, p99).",
            )
        )
    layers = Section("Per-layer latency (top-k)")
    for label, lat in latencies:
        top = lat.get("per_layer")
        pred = (lat.get("predicted") or {}).get("per_layer")
        for what, rows_, src in (("measured", top, source_text(lat)), ("predicted", pred, "predicted")):
            if not rows_:
                continue
            layers.blocks.append(Text(f"{label}: {len(rows_)} slowest layers, {src}."))
            layers.blocks.append(
                Table(
                    ["layer", "op / kernel", "avg ms", "share"],
                    [
                        [f"`{r['name']}`", r["op_type"], num(r["avg_ms"], "{:.4f}"), f"{100 * r['share']:.1f}%"]
                        for r in rows_
                    ],
                )
            )
            layers.blocks.append(
                Figure(
                    svg.hbars(
                        [(r["name"], r.get("median_ms", r["avg_ms"])) for r in rows_],
                        f"Slowest layers ({what}): {label.strip('`')}",
                        "ms per inference",
                        [f"({100 * r['share']:.0f}%)" for r in rows_],
                    ),
                    f"Top-{len(rows_)} layers of {label}, {src}.",
                )
            )
    if not layers.blocks:
        layers.blocks.append(Text("No per-layer profile (profile.per_layer: 0, or the runtime gives none)."))
    return [sec, layers]


# --------------------------------------------------------------------------- the whole report


def build_document(r: dict[str, Any]) -> Document:
    t, teacher, student = r["target"], r.get("teacher", {}), r.get("student", {})
    arts: dict[str, Any] = r.get("artifacts", {})
    doc = Document(f"edgekd report: {r['config']['name']} → {t['name']}", [])
    intro = Section("")
    intro.blocks.append(
        Text(
            f"Run `{r['run_id']}`, {r['created']}, edgekd {r['edgekd_version']}, result.json schema "
            f"v{r.get('schema_version', 1)}. Target: {t.get('description') or t['name']} (backends "
            f"{', '.join(t['backends'])}; precisions {', '.join(t['precisions'])})."
        )
    )
    doc.sections.append(intro)
    doc.sections.append(_summary(r, arts, teacher, student))
    doc.sections.append(_pass_by_pass(r, arts))
    if r.get("search"):
        doc.sections.append(_search(r["search"]))
    prof = r.get("profile") or {}
    lats = [(f"`{a['path']}`", a["latency"]) for a in arts.values() if a.get("latency")]
    context = (
        f"Batch {prof.get('batch', 1)}, {prof.get('threads') or 'default'} threads; runs interleaved in rounds, so "
        "ratios between rows share the machine's noise. **source** says for every figure whether it was measured "
        "on the device, measured on this host, or predicted."
        if lats
        else ""
    )
    doc.sections += latency_sections(lats, context)
    doc.sections.append(_artifacts(arts))
    doc.sections += _lowering(r.get("lower") or {})
    if r.get("precision"):
        doc.sections.append(_precision(r["precision"], arts))
    doc.sections += _training(student)
    doc.sections.append(
        Section(
            "Passes",
            [
                Table(
                    ["pass", "status", "seconds", "cache key"],
                    [
                        [p["pass"], p["status"], f"{p['seconds']:.1f}", f"`{p['key'][:12]}`"]
                        for p in r.get("passes", [])
                    ],
                )
            ],
        )
    )
    d = r.get("data", {})
    if d:
        doc.sections.append(
            Section(
                "Data",
                [
                    Text(
                        f"{d.get('source')}: {d.get('train'):,} train / {d.get('val'):,} val / "
                        f"{d.get('test'):,} test / {d.get('calibration')} calibration images, input "
                        f"{d.get('input_shape')}, normalised with mean "
                        f"{d.get('normalize', {}).get('mean')} std {d.get('normalize', {}).get('std')} (apply the "
                        "same on the device)."
                    )
                ],
            )
        )
    notes = r.get("notes", [])
    doc.sections.append(
        Section(
            "Not measured, fallbacks and notes",
            [Bullets(notes or ["none: every figure above was measured in this run."])],
        )
    )
    doc.sections.append(_environment(r))
    return doc


def _lowering(low: dict[str, Any]) -> list[Section]:
    """TFLite settings and the TensorRT build commands (what the device runs)."""
    out: list[Section] = []
    tfl = low.get("tflite")
    if tfl:
        out.append(
            Section(
                "TFLite",
                [
                    Text(
                        f"{', '.join(tfl['precisions'])}; {tfl['io_layout'].upper()} input/output; INT8 by "
                        f"{tfl['int8_method']} ({'per-channel' if tfl['per_channel'] else 'per-tensor'} weights, "
                        f"int8 I/O); run in LiteRT with delegate {tfl['delegate']}."
                    )
                ],
            )
        )
    t = low.get("tensorrt")
    if t:
        built = "built on this machine" if t.get("engine_built") else f"NOT built here ({t.get('why_not_built')})"
        sec = Section("TensorRT", [Text(f"Engines {built}. Build them on the device with `build_engines.sh`:")])
        sec.blocks.append(Bullets([f"`{cmd}`" for cmd in t.get("commands", {}).values()]))
        checks = [f"{prec}: `{c['path']}` checked: {'; '.join(c['checks'])}" for prec, c in t.get("checks", {}).items()]
        if checks:
            sec.blocks.append(Bullets(checks))
        out.append(sec)
    return out


def _summary(r: dict[str, Any], arts: dict[str, Any], teacher: dict[str, Any], student: dict[str, Any]) -> Section:
    sec = Section("Summary")
    t_lat = arts.get("teacher_onnx", {}).get("latency", {})
    rows = [
        [
            "teacher fp32",
            num(teacher.get("test_accuracy")),
            count(teacher.get("params")),
            mmacs(teacher.get("macs")),
            size(arts.get("teacher_onnx", {}).get("bytes")),
            num(t_lat.get("p50_ms"), "{:.3f}"),
            "1.00×" if t_lat else "—",
            source_text(t_lat) if t_lat else "—",
        ]
    ]
    for name, a in arts.items():
        if name == "teacher_onnx" or a.get("kind") not in ("onnx", "tflite", "engine", None):
            continue
        lat = a.get("latency", {})
        speed = lat.get("speedup_vs_teacher")
        rows.append(
            [
                f"student {a['precision']} (`{a['path']}`)",
                num(a.get("accuracy")),
                count(student.get("params")),
                mmacs(student.get("macs")),
                size(a["bytes"]),
                num(lat.get("p50_ms"), "{:.3f}"),
                f"{speed:.2f}×" if speed else "—",
                source_text(lat) if lat else "—",
            ]
        )
    sec.blocks.append(Table(["model", "test acc %", "params", "MACs", "file", "p50 ms", "speed-up", "latency"], rows))
    best = r.get("deployable")
    if best and best.get("name") in arts:
        sec.blocks.append(Text(f"Deployable artifact: **`{arts[best['name']]['path']}`**."))
    items = []
    for name, c in r.get("constraints", {}).items():
        mark = "met" if c["met"] else "**NOT met**"
        items.append(f"constraint `{name}`: limit {c['limit']}, value {c['value']} ({c['artifact']}): {mark}")
    if items:
        sec.blocks.append(Bullets(items))
    return sec


def _pass_by_pass(r: dict[str, Any], arts: dict[str, Any]) -> Section:
    sec = Section("Pass by pass")
    table = r.get("pass_table")
    if table is None:  # a v1 document: stages only
        table = [{**s, "latency_source": None, "p50_ms": None} for s in r.get("stages", [])]
    rows = []
    for s in table:
        acc = num(s.get("accuracy", s.get("accuracy_val"))) if s.get("accuracy") is not None else (
            num(s.get("accuracy_val")) + " (val)" if s.get("accuracy_val") is not None else "—"
        )  # fmt: skip
        src = s.get("latency_source")
        rows.append(
            [
                s["stage"],
                s["model"],
                acc,
                count(s.get("params")),
                mmacs(s.get("macs")),
                size(s.get("bytes")),
                num(s.get("p50_ms"), "{:.3f}"),
                SOURCES.get(src, src) if src else "—",
                s.get("measured") or "",
            ]
        )
    sec.blocks.append(
        Table(["stage", "model", "acc %", "params", "MACs", "size", "p50 ms", "latency", "accuracy measured"], rows)
    )
    return sec


def _search(s: dict[str, Any]) -> Section:
    sec = Section("Student search")
    src = s.get("latency_source") or ("measured-host" if s.get("latency") else "none")
    use_lat = src in ("measured-host", "predicted", "measured-device")
    cost_key, cost_label = ("latency_ms", "latency, ms") if use_lat else ("macs", "MACs")
    if use_lat:
        cost_label += " (predicted)" if src == "predicted" else " (measured on host)"
    sec.blocks.append(
        Text(
            f"Proxy **{s.get('proxy')}**, {s.get('evaluated_unique', '?')} candidates scored of {s.get('space_size')} "
            f"in {s.get('seconds', 0):.0f} s; budget {s.get('budget')}. Candidate latency: "
            f"{s.get('latency') or 'not measured (MACs used as cost)'}."
        )
    )
    history = s.get("history") or s.get("pareto") or []
    chosen = s.get("chosen") or {}

    def key(p: dict[str, Any]) -> tuple[Any, ...]:  # any search space: its label, else the ResNet genes (v1 files)
        if "label" in p:
            return (p["label"],)
        return (tuple(p["blocks"]), tuple(p["widths"]), p["kernel"])

    front = {key(p) for p in s.get("pareto", [])}

    points = []
    seen = set()
    for p in history:
        if p.get(cost_key) is None or key(p) in seen:
            continue
        seen.add(key(p))
        label = p.get("label") or f"{p['blocks']} x {p['widths']} k{p['kernel']}"
        points.append(
            svg.Point(
                float(p[cost_key]),
                float(p["score"]),
                label=("chosen " if key(p) == key(chosen) else "") + label,
                group="Pareto set" if key(p) in front else "candidate",
                highlight=bool(chosen) and key(p) == key(chosen),
            )
        )
    sec.blocks.append(
        Figure(
            svg.scatter(points, "Search: proxy score vs cost", cost_label, f"{s.get('proxy')} score", ["Pareto set"]),
            f"Every evaluated candidate (score vs {cost_label}); the Pareto set is joined; the chosen student is red.",
        )
    )
    rows = []
    for p in s.get("pareto", []):
        mark = " **← chosen**" if chosen and key(p) == key(chosen) else ""
        rows.append(
            [
                p.get("label") or f"blocks {p['blocks']}, widths {p['widths']}, kernel {p['kernel']}",
                num(p["score"], "{:.4g}"),
                count(p["params"]),
                mmacs(p["macs"]),
                num(p.get("latency_ms"), "{:.3f}") + mark,
            ]
        )
    sec.blocks.append(Table(["candidate", "score", "params", "MACs", "latency ms"], rows))
    return sec


def _artifacts(arts: dict[str, Any]) -> Section:
    rows = []
    models = [a for a in arts.values() if a.get("kind") in ("onnx", "tflite", "engine", None)]
    for a in models:
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
                size(a["bytes"]),
                f"`{a['sha256'][:12]}`",
                num(a.get("accuracy")),
                parity,
            ]
        )
    sec = Section(
        "Artifacts and parity",
        [Table(["file", "precision", "backend", "size", "sha256", "test acc %", "parity vs PyTorch"], rows)],
    )
    parity = [(a, a["parity"]) for a in models if a.get("parity")]
    if parity:
        keys = sorted(
            {k for _, p in parity for k, v in p.items() if isinstance(v, int | float | bool | str) and k != "artifact"}
        )
        sec.blocks.append(Text("Parity checks in full (outputs of each artifact vs the PyTorch student):"))
        sec.blocks.append(
            Table(["file", *keys], [[f"`{a['path']}`", *(_cell(p.get(k)) for k in keys)] for a, p in parity])
        )
    return sec


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _precision(prec: dict[str, list[dict[str, Any]]], arts: dict[str, Any]) -> Section:
    sec = Section("Per-layer precision")
    for name, rows in prec.items():
        if not rows:
            continue
        n8 = sum(r["precision"] == "int8" for r in rows)
        path = arts.get(name, {}).get("path", name)
        sec.blocks.append(Text(f"`{path}`: {n8} of {len(rows)} kernels in int8."))
        sec.blocks.append(
            Table(["layer", "kernel", "precision"], [[f"`{r['layer']}`", r["kernel"], r["precision"]] for r in rows])
        )
    return sec


def _training(student: dict[str, Any]) -> list[Section]:
    out = []
    distill = student.get("distill")
    if distill:
        out.append(
            Section(
                "Distillation",
                [
                    Text(
                        f"{len(distill['epochs'])} epochs on {distill['train_samples']:,} images in "
                        f"{distill['seconds']:.0f} s; best epoch {distill['best_epoch']} (val "
                        f"{num(distill['val_accuracy'])}%), test {num(distill['test_accuracy'])}%."
                    )
                ],
            )
        )
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


def _environment(r: dict[str, Any]) -> Section:
    env = dict(r.get("environment", {}))
    t = r["target"]
    rows = [
        ["target", f"{t['name']} (runtime {t.get('runtime', {}).get('name', '?')})"],
        ["latency measured on", str(env.pop("latency_device", None) or "—")],
        ["latency sources", ", ".join(SOURCES.get(s, s) for s in env.pop("latency_sources", []) or []) or "—"],
        ["threads", str(env.pop("threads", "—"))],
        ["batch", str(env.pop("batch", "—"))],
        ["precisions", ", ".join(env.pop("precisions", []) or []) or "—"],
    ]
    device = env.pop("device", None)
    if device:
        rows.append(["device", ", ".join(f"{k} {v}" for k, v in device.items())])
    rows += [[k, str(v)] for k, v in env.items()]
    return Section("Environment", [Table(["", ""], rows)])
