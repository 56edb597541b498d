"""``result.json``: the machine-readable outcome of a compile (schema version 3; see docs/result-schema.md).

Top-level keys: ``schema_version``, ``edgekd_version``, ``run_id``, ``created``, ``config``,
``target`` (name, description, backends, precisions, runtime, device, latency, predictor), ``data``, ``teacher``,
``student``, ``deployable``, ``artifacts`` (name -> path, sha256, bytes, precision, backend, accuracy, parity,
latency), ``lower`` (opset, simplification, TFLite settings, TensorRT checks and trtexec
commands), ``stages``, ``pass_table`` (one row per stage: accuracy, params, MACs, size, latency and its source),
``search`` (the search pass's candidates, Pareto set and choice), ``precision`` (artifact -> per-layer
precision rows), ``passes``, ``profile``, ``constraints`` (each with its value and whether it was met),
``notes`` (what was not measured and why), ``environment`` (versions, threads, device, latency sources).
Every latency carries ``source`` (``measured-device`` | ``measured-host`` | ``predicted``), ``measured`` (bool),
``on_target`` (bool) and ``where`` (text); a host stand-in may carry ``predicted`` (the predictor's figure for the
target). v1 -> v2: added ``source``, ``predicted``, ``pass_table``, ``search``, ``precision``,
``target.latency``/``target.predictor`` and the environment's ``threads``/``device``/``latency_sources``; nothing
was removed or renamed. v2 -> v3: each pass places its own part (``Pass.result_key``), so ``search``, ``lower``,
``profile`` and ``student.distill``/``prune``/``quantize`` are present only for passes in the run.
"""

from __future__ import annotations

import platform
import time
from typing import Any

from edgekd._version import __version__
from edgekd.backends.base import MODEL_KINDS
from edgekd.core.errors import ProfilingError
from edgekd.core.latency_source import source_of as latency_source
from edgekd.pipeline.context import Context

SCHEMA_VERSION = 3


def environment() -> dict[str, Any]:
    import numpy
    import onnx
    import torch

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:  # pragma: no cover - core dependency
        ort = None
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort,
        "numpy": numpy.__version__,
    }


def _constraints(ctx: Context, student_best: dict[str, Any] | None) -> dict[str, Any]:
    c = ctx.config.constraints
    out: dict[str, Any] = {}
    teacher = ctx.metrics.get("teacher", {})
    if c.max_accuracy_drop is not None and student_best and teacher.get("test_accuracy") is not None:
        # judged on the validation split, as the passes' guard is: the test split informs, it never decides
        test_drop = teacher["test_accuracy"] - (student_best.get("accuracy") or 0.0)
        val_t, val_s = teacher.get("val_accuracy"), student_best.get("accuracy_val")
        on_val = val_t is not None and val_t == val_t and val_s is not None
        drop = val_t - val_s if on_val else test_drop
        out["max_accuracy_drop"] = {
            "limit": c.max_accuracy_drop,
            "value": round(drop, 3),
            "split": "val" if on_val else "test",
            "test_value": round(test_drop, 3),
            "artifact": student_best["name"],
            "met": drop <= c.max_accuracy_drop,
        }
    if c.max_latency_ms is not None and student_best and student_best.get("p50") is not None:
        out["max_latency_ms"] = {
            "limit": c.max_latency_ms,
            "value": student_best["p50"],
            "artifact": student_best["name"],
            # a latency taken on a stand-in host says nothing about the target's: not checked there
            "met": student_best["p50"] <= c.max_latency_ms if student_best.get("on_target") else None,
            "on_target": student_best.get("on_target"),
        }
    if c.max_size_mb is not None and student_best:
        mb = student_best["bytes"] / 2**20
        out["max_size_mb"] = {
            "limit": c.max_size_mb,
            "value": round(mb, 4),
            "artifact": student_best["name"],
            "met": mb <= c.max_size_mb,
        }
    return out


def deployable(ctx: Context) -> dict[str, Any] | None:
    """The artifact a user would ship: the fastest measured student artifact, else the most compressed one."""
    cands = [a for a in ctx.artifacts.values() if a.kind in MODEL_KINDS and a.name != "teacher_onnx"]
    if not cands:
        return None
    timed = [a for a in cands if "latency" in a.info]
    best = min(timed, key=lambda a: a.info["latency"]["p50_ms"]) if timed else min(cands, key=lambda a: a.bytes)
    lat = best.info.get("latency", {})
    return {
        "name": best.name,
        "accuracy": best.info.get("accuracy"),
        "accuracy_val": best.info.get("accuracy_val"),
        "bytes": best.bytes,
        "p50": lat.get("p50_ms"),
        "on_target": lat.get("on_target"),
    }


def _precision(ctx: Context, notes: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Per-layer precision of each student ONNX artifact: every kernel and whether it runs in int8 or float. An
    artifact whose graph cannot be read is left out, and ``notes`` says so and why."""
    from edgekd.latency.predictor.kernels import detect

    out: dict[str, list[dict[str, Any]]] = {}
    for a in ctx.artifacts.values():
        if a.kind != "onnx" or a.name == "teacher_onnx":
            continue
        try:
            kernels = detect(ctx.path_of(a.name)).kernels
        except (ProfilingError, OSError, ValueError) as exc:
            notes.append(f"per-layer precision of {a.path} not tabulated: its graph could not be read ({exc})")
            continue
        float_prec = "fp16" if a.precision == "fp16" else "fp32"
        out[a.name] = [
            {"layer": k.nodes[0], "kernel": k.type, "precision": "int8" if k.type.startswith("q") else float_prec}
            for k in kernels
            if k.type not in ("reshape", "quant")
        ]
    return out


def _pass_table(ctx: Context) -> list[dict[str, Any]]:
    """The stages with accuracy, params, MACs, size and latency (with its source) wherever known."""
    student = ctx.metrics.get("student", {})
    teacher = ctx.metrics.get("teacher", {})
    rows = []
    for st in ctx.stages:
        row = {k: st.get(k) for k in ("stage", "model", "accuracy", "accuracy_val", "params", "macs", "bytes")}
        art_name = None
        if st.get("stage") == "input":
            art_name = "teacher_onnx"
            row["params"] = row["params"] or teacher.get("params")
            row["macs"] = row["macs"] or teacher.get("macs")
        else:
            art_name = st.get("artifact")
            art = ctx.artifacts[art_name].info if art_name in ctx.artifacts else {}
            row["params"] = row["params"] or art.get("params") or student.get("params")
            row["macs"] = row["macs"] or art.get("macs") or student.get("macs")
        lat = ctx.artifacts[art_name].info.get("latency") if art_name in ctx.artifacts else None
        row["artifact"] = art_name
        row["p50_ms"] = lat.get("p50_ms") if lat else None
        row["latency_source"] = latency_source(lat)
        row["measured"] = st.get("measured")
        rows.append(row)
    return rows


def build_result(ctx: Context, passes: list[dict[str, Any]]) -> dict[str, Any]:
    t = ctx.target
    best = deployable(ctx)
    sources = sorted(
        {latency_source(a.info.get("latency")) for a in ctx.artifacts.values() if a.info.get("latency")} - {None}
    )
    env = environment()
    env.update(
        {
            "threads": t.runtime.threads,
            "batch": t.profile.batch,
            "latency_device": None,
            "device": None,
            **ctx.metrics.get("environment", {}),  # what a pass measured with (the profile pass: threads, device)
            "precisions": sorted({a.precision for a in ctx.artifacts.values() if a.kind == "onnx"}),
            "latency_sources": sources,
        }
    )
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "edgekd_version": __version__,
        "run_id": ctx.run_dir.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {"name": ctx.config.name, "path": str(ctx.config.source_file) if ctx.config.source_file else None},
        "target": {
            "name": t.name,
            "description": t.description,
            "cpu_arch": t.cpu_arch,
            "backends": t.backends,
            "precisions": t.precisions,
            "runtime": t.runtime.model_dump(mode="json"),
            "device": t.device.model_dump(mode="json"),
            "measured_on_target": t.is_host,
            "latency": t.latency,
            "predictor": t.predictor,
        },
        "data": ctx.metrics.get("data", {}),
        "teacher": ctx.metrics.get("teacher", {}),
        "student": dict(ctx.metrics.get("student", {})),
        "deployable": best,
        "artifacts": {
            a.name: {**{k: v for k, v in a.record().items() if k not in ("name", "info")}, **a.info}
            for a in ctx.artifacts.values()
        },
        "stages": ctx.stages,
        "pass_table": _pass_table(ctx),
        "precision": _precision(ctx, notes := list(ctx.notes)),
        "passes": passes,
        "constraints": _constraints(ctx, best),
        "notes": notes,
        "code": ctx.metrics.get("code", []),
        "environment": env,
    }
    ran = {id(p) for p in ctx.stages_run}
    for p in ctx.plan or ctx.stages_run:  # each pass's part at its own key; null for a planned pass that did not run
        if p.result_key:
            _place(result, p.result_key, p.result_entry(ctx) if id(p) in ran else None)
    return result


def _place(doc: dict[str, Any], key: tuple[str, ...], value: Any) -> None:
    for k in key[:-1]:
        doc = doc.setdefault(k, {})
    doc[key[-1]] = value
