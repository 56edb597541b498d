"""The pass manager: runs the planned passes over a context, caches each one, records it in the manifest, and
writes the failure files when a pass cannot meet the accuracy guard.

* each pass's output is keyed by sha256(pass name, its config, the key of its input state, edgekd version) and
  stored under ``<out>/.cache/<key>/``; a re-run or ``--resume`` restores finished passes from there after
  verifying every file's sha256 (a corrupted entry is discarded and the pass runs again);
* artifacts are written atomically by the passes (:meth:`Context.artifact`) and recorded with sha256 in
  ``manifest.json`` after every pass;
* a pass raising :class:`~edgekd.core.errors.ConstraintError` (the accuracy guard, or the report finding a
  constraint unmet) has saved what it made; the manager adds
  ``result.failed.json`` and ``report.failed.md`` (never ``result.json``, which means "finished") and re-raises;
* events go to ``events.jsonl``.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from edgekd._version import __version__
from edgekd.compiler.cache import Cache, digest
from edgekd.compiler.manifest import write_manifest
from edgekd.config.model import ModelSpec
from edgekd.core.artifacts import atomic_writer, sha256_file
from edgekd.core.errors import AccuracyGuardError, ConstraintError, EdgekdError
from edgekd.core.progress import console
from edgekd.models.build import build, load_state_dict
from edgekd.pipeline.context import Artifact, Context
from edgekd.pipeline.stage import Pass, Produced
from edgekd.stages.report.render import render_markdown
from edgekd.stages.report.result import build_result


class PassManager:
    """Runs a list of configured passes over a context, with caching and a manifest."""

    def __init__(self, passes: list[Pass], cache: Cache, initial_key: str) -> None:
        self.passes = passes
        self.cache = cache
        self.initial_key = initial_key

    def run(self, ctx: Context) -> Context:
        records = ctx.records
        ctx.plan = list(self.passes)
        key = self.initial_key
        total = len(self.passes)
        for i, p in enumerate(self.passes):
            ctx.current_pass = p.name
            cfg = p.config.model_dump(mode="json")
            key = digest({"pass": p.name, "config": cfg, "input": key, "version": __version__})
            hit = self.cache.load(key) if p.cacheable else None
            t0 = time.perf_counter()
            if hit and "corrupt" in hit:
                ctx.events.emit("cache_corrupt", pass_=p.name, key=key, reason=hit["corrupt"])
                ctx.note(f"cache entry of pass {p.name} was corrupted ({hit['corrupt']}); it was run again")
                hit = None
            ctx.stages_run.append(p)
            if hit:
                self._restore(ctx, p, hit)
                status = "cached"
            else:
                if not ctx.quiet:
                    console.print(f"[bold cyan][{i + 1}/{total}] {p.name}[/]")
                ctx.events.emit("pass_start", pass_=p.name, index=i, key=key)
                try:
                    produced = p.run(ctx) or Produced()
                except ConstraintError as exc:
                    ctx.events.emit("pass_failed", pass_=p.name, error=str(exc))
                    raise write_failure(ctx, p.name, exc) from exc
                except EdgekdError as exc:
                    ctx.events.emit("pass_failed", pass_=p.name, error=str(exc))
                    raise
                if p.cacheable and produced.cacheable:
                    self._store(ctx, key)
                status = "ran"
            ctx.capabilities |= p.produces
            seconds = round(time.perf_counter() - t0, 3)
            if status == "cached" and not ctx.quiet:
                console.print(f"[dim][{i + 1}/{total}] {p.name}: cached ({key[:12]})[/]")
            ctx.events.emit("pass_end", pass_=p.name, status=status, seconds=seconds, key=key)
            records.append({"pass": p.name, "status": status, "key": key, "seconds": seconds, "config": cfg})
            write_manifest(ctx, records)
        return ctx

    def _store(self, ctx: Context, key: str) -> None:
        arts = list(ctx.artifacts.values())
        names = {a.name: f"a{i}-{Path(a.path).name}" for i, a in enumerate(arts)}
        state: dict[str, Any] = {
            "artifacts": [a.record() for a in arts],
            "artifact_files": names,
            "metrics": ctx.metrics,
            "stages": ctx.stages,
            "notes": ctx.notes,
            "student_spec": ctx.student_spec.model_dump(mode="json") if ctx.student_spec else None,
            "ran_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        stored: dict[str, Path | bytes] = {names[a.name]: ctx.run_dir / a.path for a in arts}
        if ctx.student is not None:
            buffer = io.BytesIO()
            torch.save(ctx.student.state_dict(), buffer)
            stored["student.pt"] = buffer.getvalue()
        self.cache.store(key, state, stored)

    def _restore(self, ctx: Context, p: Pass, state: dict[str, Any]) -> None:
        entry: Path = state["dir"]
        ctx.metrics = state["metrics"]
        ctx.stages = state["stages"]
        for n in state["notes"]:
            ctx.note(n)
        ctx.note(
            f"{p.name}: restored from the cache, so its figures (accuracy, latency) were measured when it ran "
            f"({state.get('ran_at', 'in an earlier compile')}), not in this run; --no-cache measures again"
        )
        ctx.artifacts = {}
        for a in state["artifacts"]:
            art = Artifact(**a)
            dest = ctx.run_dir / art.path
            if not dest.is_file() or sha256_file(dest) != art.sha256:
                with atomic_writer(dest) as tmp:
                    shutil.copyfile(entry / state["artifact_files"][art.name], tmp)
            ctx.artifacts[art.name] = art
        if state["student_spec"] is not None:
            ctx.student_spec = ModelSpec.model_validate(state["student_spec"])
            if (entry / "student.pt").is_file():
                ctx.student = build(ctx.student_spec, "student", teacher=ctx.teacher, base_dir=ctx.config.base_dir)
                ctx.student.load_state_dict(load_state_dict(entry / "student.pt", "student"))
                ctx.student.eval()
        ctx.events.emit("cache_hit", pass_=p.name, key=entry.name)


def write_failure(ctx: Context, pass_name: str, exc: ConstraintError) -> ConstraintError:
    """Record a pass that could not meet a constraint: the manifest, ``result.failed.json`` (with the failure) and
    ``report.failed.md`` of the run as it stands. Returns the error to raise, naming every file saved."""
    ctx.note(f"{exc.message}. Saved anyway: {', '.join(exc.saved)}")
    records = [*ctx.records, {"pass": pass_name, "status": "failed", "seconds": 0.0, "key": "-", "error": exc.message}]
    write_manifest(ctx, records)
    result = build_result(ctx, records)
    result["failed"] = {
        "pass": pass_name,
        "error": type(exc).__name__,
        "message": exc.message,
        "saved": exc.saved,
    }
    if isinstance(exc, AccuracyGuardError):
        result["failed"]["best_accuracy_val"] = exc.best_accuracy
    # named *.failed.*: pipelines take result.json's presence as "the compile finished"
    with ctx.artifact("report_failed_md", "report.failed.md", "markdown", precision="-", backend="-") as tmp:
        tmp.write_text(render_markdown(result, ctx.stages_run))
    with ctx.artifact("result_failed_json", "result.failed.json", "json", precision="-", backend="-") as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    write_manifest(ctx, records)
    saved = [*exc.saved, "result.failed.json", "report.failed.md"]
    fix = f"{exc.fix}; the best model is in {ctx.run_dir} ({', '.join(saved)})"
    if isinstance(exc, AccuracyGuardError):
        return AccuracyGuardError(exc.message, fix=fix, best_accuracy=exc.best_accuracy, saved=saved)
    return ConstraintError(exc.message, fix=fix, saved=saved)
