"""``result.json``: the machine-readable outcome of a compile (schema version 1).

Top-level keys: ``schema_version``, ``edgekd_version``, ``run_id``, ``created``, ``config``,
``target`` (name, description, backends, precisions, runtime, device), ``data``, ``teacher``,
``student``, ``artifacts`` (name -> path, sha256, bytes, precision, backend, accuracy, parity,
latency), ``stages``, ``passes``, ``constraints`` (each with its value and whether it was met),
``notes`` (what was not measured and why), ``environment``.
Every latency carries ``measured`` (bool), ``on_target`` (bool) and ``where`` (text).
"""

from __future__ import annotations

import platform
import time
from typing import Any

from edgekd._version import __version__
from edgekd.pipeline import Context

SCHEMA_VERSION = 1


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
    teacher_acc = ctx.metrics.get("teacher", {}).get("test_accuracy")
    if c.max_accuracy_drop is not None and student_best and teacher_acc is not None:
        drop = teacher_acc - (student_best.get("accuracy") or 0.0)
        out["max_accuracy_drop"] = {
            "limit": c.max_accuracy_drop,
            "value": round(drop, 3),
            "artifact": student_best["name"],
            "met": drop <= c.max_accuracy_drop,
        }
    if c.max_latency_ms is not None and student_best and student_best.get("p50") is not None:
        out["max_latency_ms"] = {
            "limit": c.max_latency_ms,
            "value": student_best["p50"],
            "artifact": student_best["name"],
            "met": student_best["p50"] <= c.max_latency_ms,
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
    cands = [a for a in ctx.artifacts.values() if a.kind in ("onnx", "tflite", "engine") and a.name != "teacher_onnx"]
    if not cands:
        return None
    timed = [a for a in cands if "latency" in a.info]
    best = min(timed, key=lambda a: a.info["latency"]["p50_ms"]) if timed else min(cands, key=lambda a: a.bytes)
    lat = best.info.get("latency", {})
    return {
        "name": best.name,
        "accuracy": best.info.get("accuracy"),
        "bytes": best.bytes,
        "p50": lat.get("p50_ms"),
        "on_target": lat.get("on_target"),
    }


def build_result(ctx: Context, passes: list[dict[str, Any]]) -> dict[str, Any]:
    t = ctx.target
    best = deployable(ctx)
    return {
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
        },
        "data": ctx.metrics.get("data", {}),
        "teacher": ctx.metrics.get("teacher", {}),
        "student": {
            **ctx.metrics.get("student", {}),
            "distill": ctx.metrics.get("distill"),
            "quantize": ctx.metrics.get("quantize"),
            "prune": ctx.metrics.get("prune"),
        },
        "deployable": best,
        "artifacts": {
            a.name: {
                "path": a.path,
                "sha256": a.sha256,
                "bytes": a.bytes,
                "kind": a.kind,
                "precision": a.precision,
                "backend": a.backend,
                "producer": a.producer,
                **a.info,
            }
            for a in ctx.artifacts.values()
        },
        "stages": ctx.stages,
        "passes": passes,
        "profile": ctx.metrics.get("profile"),
        "constraints": _constraints(ctx, best),
        "notes": ctx.notes,
        "environment": environment(),
    }
