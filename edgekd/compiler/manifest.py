"""``manifest.json``: version, inputs, each pass's status and cache key, each artifact with its sha256."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekd._version import __version__
from edgekd.compiler.cache import write_json
from edgekd.core.artifacts import sha256_file
from edgekd.pipeline.context import Context


def write_manifest(ctx: Context, records: list[dict[str, Any]]) -> Path:
    """``manifest.json``: version, inputs, each pass's status and cache key, each artifact with sha256."""
    cfg = ctx.config
    inputs = {}
    if cfg.source_file:
        inputs["config"] = {"path": str(cfg.source_file), "sha256": sha256_file(cfg.source_file)}
    for spec, key in ((cfg.teacher, "teacher"), (cfg.student, "student")):
        if spec is not None and spec.checkpoint is not None:
            p = cfg.resolve(spec.checkpoint)
            inputs[f"{key}_checkpoint"] = {"path": str(p), "sha256": sha256_file(p)}
    manifest = {
        "edgekd_version": __version__,
        "run_id": ctx.run_dir.name,
        "target": ctx.target.name,
        "inputs": inputs,
        "passes": records,
        "artifacts": {
            a.name: {
                "path": a.path,
                "sha256": a.sha256,
                "bytes": a.bytes,
                "kind": a.kind,
                "precision": a.precision,
                "producer": a.producer,
            }
            for a in ctx.artifacts.values()
        },
    }
    path = ctx.run_dir / "manifest.json"
    write_json(path, manifest)
    return path
