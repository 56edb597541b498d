"""The report of a compile as a document, built from its result.json alone (so ``edgekd report`` re-renders any
run): summary, pass-by-pass table, latency, artifacts and parity, per-layer precision, passes, data, notes and the
environment. Each pass adds its own sections; this module knows no pass by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgekd.backends.base import MODEL_KINDS
from edgekd.core.latency_source import SOURCES
from edgekd.document.latency import latency_sections, source_text
from edgekd.document.model import Bullets, Document, Section, Table, Text, count, mmacs, num, size


def build_document(r: dict[str, Any], stages: Sequence[Any] = ()) -> Document:
    """The report of a result.json (v1, v2 or v3); ``stages`` are the passes of the run (classes or instances),
    each contributing its own sections (:meth:`edgekd.pipeline.stage.Pass.report_sections`)."""
    overview, details = [], []
    for s in dict.fromkeys(s if isinstance(s, type) else type(s) for s in stages):
        (overview if s.report_position == "overview" else details).extend(s.report_sections(r))
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
    doc.sections += overview
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
    if r.get("precision"):
        doc.sections.append(_precision(r["precision"], arts))
    doc.sections += details
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
        if name == "teacher_onnx" or a.get("kind") not in (*MODEL_KINDS, None):
            continue
        lat = a.get("latency", {})
        speed = lat.get("speedup_vs_teacher")
        rows.append(
            [
                f"student {a['precision']} (`{a['path']}`)",
                num(a.get("accuracy")),
                count(a.get("params", student.get("params"))),  # v3: the artifact's own model
                mmacs(a.get("macs", student.get("macs"))),
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
        mark = {True: "met", False: "**NOT met**", None: "not checked (latency not measured on the target)"}[c["met"]]
        where = ""
        if "split" in c:  # max_accuracy_drop: the split that decided, and the test split's figure beside it
            where = f", {c['split']} split" + (f"; test split {c['test_value']}" if c["split"] == "val" else "")
        items.append(f"constraint `{name}`: limit {c['limit']}, value {c['value']} ({c['artifact']}{where}): {mark}")
    guard = _guard_reference(r)
    if guard:
        items.append(guard)
    if items:
        sec.blocks.append(Bullets(items))
    return sec


def _guard_reference(r: dict[str, Any]) -> str | None:
    """Which split the accuracy guard's reference came from, and whether the teacher is known not to have seen it."""
    acc = r.get("constraints", {}).get("max_accuracy_drop")
    split = r.get("teacher", {}).get("val_split")
    if acc is None or not split:
        return None
    text = (
        f"the passes' accuracy guard compared validation accuracy: {split['images']} images held out of the "
        f"training data (data.val_fraction {split['val_fraction']}, seed {split['seed']}), teacher "
        f"{num(r['teacher'].get('val_accuracy'))}% there; the constraint above is judged on the same split"
    )
    held = split.get("held_out_by_teacher")
    if held is True:
        return text + f". The teacher's record ({split['teacher_record']}) says it never trained on these images."
    if held is False:
        return text + ". **The teacher's record names another held-out split**: the reference may be inflated."
    return text + ". Nothing records whether the teacher trained on them; if it did, the reference is inflated."


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


def _artifacts(arts: dict[str, Any]) -> Section:
    rows = []
    models = [a for a in arts.values() if a.get("kind") in (*MODEL_KINDS, None)]
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
