"""The pass manager: order checks, per-pass cache, resume, atomic artifacts, manifest and events.

A pass is a class with a ``name``, a pydantic ``Config``, the capabilities it
``requires`` and ``produces``, and ``run(ctx)``. The manager:

* checks the whole list before anything runs (a pass whose inputs no earlier
  pass produces, or that must come before another, is refused with the reason);
* keys each pass's output by sha256(pass name, its config, the key of its input
  state, edgekd version) and stores it under ``<out>/.cache/<key>/``; a re-run or
  ``--resume`` restores finished passes from there after verifying every file's
  sha256 (a corrupted entry is discarded and the pass runs again);
* writes artifacts atomically and records them with sha256 in ``manifest.json``;
* logs events to ``events.jsonl``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from edgekd._version import __version__
from edgekd.artifacts import atomic_write_bytes, atomic_writer, sha256_file
from edgekd.config import ModelConfig, ModelSpec, Strict, TargetConfig
from edgekd.data.dataset import DataBundle
from edgekd.errors import STORAGE_ERRNOS, EdgekdError, PipelineError, storage_error
from edgekd.progress import EventLog, TaskProgress, console


@dataclass
class Artifact:
    """A file a pass produced: where it is in the run folder, its hash, and what is known about it."""

    name: str
    path: str  # relative to the run folder
    sha256: str
    bytes: int
    kind: str  # onnx, tflite, engine, text, ...
    precision: str = "fp32"
    backend: str = "onnx"
    producer: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # parity, accuracy, latency, ...


@dataclass
class Context:
    """What flows through the passes."""

    config: ModelConfig
    target: TargetConfig
    run_dir: Path
    data: DataBundle
    teacher: nn.Module
    student: nn.Module | None
    student_spec: ModelSpec | None
    events: EventLog
    quiet: bool = False
    capabilities: set[str] = field(default_factory=set)
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    current_pass: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)  # one per pass run so far (status, key, seconds)

    def progress(self, label: str | None = None) -> TaskProgress:
        return TaskProgress(label or self.current_pass, self.events, self.quiet)

    def note(self, text: str) -> None:
        """Something the report must say plainly (a figure not measured, a fallback taken)."""
        if text not in self.notes:
            self.notes.append(text)
            self.events.emit("note", text=text)
            if not self.quiet:
                console.print(f"  [yellow]note:[/] {text}")

    @contextlib.contextmanager
    def artifact(self, name: str, filename: str, kind: str, **meta: Any) -> Iterator[Path]:
        """Write an artifact atomically: the block writes the yielded temp path; on success it is renamed,
        hashed and registered under ``name``."""
        final = self.run_dir / filename
        with atomic_writer(final) as tmp:
            yield tmp
        self.add_artifact(name, final, kind, **meta)

    def add_artifact(self, name: str, path: Path, kind: str, **meta: Any) -> Artifact:
        art = Artifact(
            name=name,
            path=str(path.relative_to(self.run_dir)),
            sha256=sha256_file(path),
            bytes=path.stat().st_size,
            kind=kind,
            producer=self.current_pass,
            **meta,
        )
        self.artifacts[name] = art
        self.events.emit("artifact", name=name, path=art.path, sha256=art.sha256, bytes=art.bytes)
        return art

    def path_of(self, name: str) -> Path:
        return self.run_dir / self.artifacts[name].path


class Pass:
    """Base class of every pass. Subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]] = Strict
    requires: ClassVar[frozenset[str]] = frozenset()
    produces: ClassVar[frozenset[str]] = frozenset()
    #: capability -> reason: this pass is refused once that capability exists
    must_precede: ClassVar[dict[str, str]] = {}
    #: False for passes whose output depends on the run itself (the report)
    cacheable: ClassVar[bool] = True
    #: True when the pass changes the PyTorch student (its weights are cached)
    changes_student: ClassVar[bool] = False

    def __init__(self, config: BaseModel) -> None:
        self.config = config

    def check(self, where: str, teacher: nn.Module, student: nn.Module | None) -> None:
        """Checks that need the built models (e.g. layer names), run before anything is written.
        ``where`` is the pass's YAML path (``passes[0].distill``); raise a ConfigError naming it."""

    def check_target(self, where: str, target: TargetConfig) -> None:
        """Checks that need the target (e.g. its backend's converter is installed), run before anything is written;
        raise an EdgekdError naming ``where`` or the package to install."""

    def run(self, ctx: Context) -> None:
        raise NotImplementedError


def check_order(passes: list[tuple[str, type[Pass]]], initial: set[str]) -> None:
    """Refuse an impossible pass list before anything runs."""
    have = set(initial)
    for i, (name, cls) in enumerate(passes):
        missing = cls.requires - have
        if missing:
            from edgekd.registry import get_pass, pass_names

            producers = sorted(n for n in pass_names() if (c := get_pass(n)) is not None and c.produces & missing)
            hint = f"put {' or '.join(producers)} before it" if producers else ""
            if "student" in missing:
                hint += (", or " if hint else "") + "give student: in model.yaml"
            hint = hint or "add a pass that produces it"
            raise PipelineError(
                f"passes[{i}].{name} needs {', '.join(sorted(missing))}, which no earlier pass produces", fix=hint
            )
        for cap, reason in cls.must_precede.items():
            if cap in have:
                raise PipelineError(
                    f"passes[{i}].{name} cannot run after the student was {cap}: {reason}",
                    fix=f"move {name} earlier in passes:",
                )
        have |= cls.produces


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def _artifact_dict(a: Artifact) -> dict[str, Any]:
    return dict(a.__dict__)


class Cache:
    """Pass outputs under ``<root>/<key>/``: ``state.json`` (written last) plus the files it lists."""

    def __init__(self, root: Path, read: bool = True) -> None:
        self.root = root
        self.read = read

    def load(self, key: str) -> dict[str, Any] | None:
        entry = self.root / key
        state_file = entry / "state.json"
        if not self.read or not state_file.is_file():
            return None
        try:
            state = json.loads(state_file.read_text())
            for rel, sha in state["files"].items():
                if sha256_file(entry / rel) != sha:
                    raise ValueError(f"{rel} sha256 mismatch")
        except (OSError, ValueError, KeyError) as exc:
            shutil.rmtree(entry, ignore_errors=True)  # corrupted: never reuse
            return {"corrupt": str(exc)}
        state["dir"] = entry
        return state

    def store(self, key: str, state: dict[str, Any], files: dict[str, Path | bytes]) -> None:
        """Write ``files`` (name -> source path or bytes) and state.json last into a temp dir, renamed into place.

        Safe under concurrent compiles: the same key means the same inputs, so when another process
        stored it first, its complete entry is kept and ours is dropped.
        """
        entry = self.root / key
        tmp = self.root / f".{key}.tmp-{os.getpid()}-{time.time_ns()}"
        try:
            tmp.mkdir(parents=True)
            shas = {}
            for rel, src in files.items():
                if isinstance(src, bytes):
                    (tmp / rel).write_bytes(src)
                else:
                    shutil.copyfile(src, tmp / rel)
                shas[rel] = sha256_file(tmp / rel)
            _write_json(tmp / "state.json", {**state, "files": shas})
            if entry.exists() and not (entry / "state.json").is_file():
                shutil.rmtree(entry, ignore_errors=True)  # debris of a foreign or manual edit
            try:
                tmp.rename(entry)
            except OSError:
                if not (entry / "state.json").is_file():
                    raise
        except OSError as exc:
            if exc.errno in STORAGE_ERRNOS:
                raise storage_error(exc, exc.filename or entry) from exc
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class RunLock:
    """An exclusive lock on a run folder, so two compiles never write into the same one."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self._f: Any = None

    def __enter__(self) -> RunLock:
        self._f = open(self.path, "w")
        try:
            fcntl.flock(self._f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.close()
            raise PipelineError(
                f"{self.path.parent} is in use by another edgekd process",
                fix="wait for it to finish, or compile into another --out",
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._f, fcntl.LOCK_UN)
        self._f.close()


class PassManager:
    """Runs a list of configured passes over a context, with caching and a manifest."""

    def __init__(self, passes: list[Pass], cache: Cache, initial_key: str) -> None:
        self.passes = passes
        self.cache = cache
        self.initial_key = initial_key

    def run(self, ctx: Context) -> Context:
        self.records = ctx.records
        key = self.initial_key
        total = len(self.passes)
        for i, p in enumerate(self.passes):
            ctx.current_pass = p.name
            cfg = p.config.model_dump(mode="json")
            key = _digest({"pass": p.name, "config": cfg, "input": key, "version": __version__})
            hit = self.cache.load(key) if p.cacheable else None
            t0 = time.perf_counter()
            if hit and "corrupt" in hit:
                ctx.events.emit("cache_corrupt", pass_=p.name, key=key, reason=hit["corrupt"])
                ctx.note(f"cache entry of pass {p.name} was corrupted ({hit['corrupt']}); it was run again")
                hit = None
            if hit:
                self._restore(ctx, p, hit)
                status = "cached"
            else:
                if not ctx.quiet:
                    console.print(f"[bold cyan][{i + 1}/{total}] {p.name}[/]")
                ctx.events.emit("pass_start", pass_=p.name, index=i, key=key)
                try:
                    p.run(ctx)
                except EdgekdError as exc:
                    ctx.events.emit("pass_failed", pass_=p.name, error=str(exc))
                    raise
                if p.cacheable and getattr(p, "cache_result", True):  # a pass may decline for one run
                    self._store(ctx, p, key)
                status = "ran"
            ctx.capabilities |= p.produces
            seconds = round(time.perf_counter() - t0, 3)
            if status == "cached" and not ctx.quiet:
                console.print(f"[dim][{i + 1}/{total}] {p.name}: cached ({key[:12]})[/]")
            ctx.events.emit("pass_end", pass_=p.name, status=status, seconds=seconds, key=key)
            self.records.append({"pass": p.name, "status": status, "key": key, "seconds": seconds, "config": cfg})
            write_manifest(ctx, self.records)
        return ctx

    def _store(self, ctx: Context, p: Pass, key: str) -> None:
        files = {f"a{i}-{Path(a.path).name}": ctx.run_dir / a.path for i, a in enumerate(ctx.artifacts.values())}
        state: dict[str, Any] = {
            "artifacts": [_artifact_dict(a) for a in ctx.artifacts.values()],
            "artifact_files": {a.name: f"a{i}-{Path(a.path).name}" for i, a in enumerate(ctx.artifacts.values())},
            "metrics": ctx.metrics,
            "stages": ctx.stages,
            "notes": ctx.notes,
            "student_spec": ctx.student_spec.model_dump(mode="json") if ctx.student_spec else None,
        }
        stored: dict[str, Path | bytes] = dict(files)
        if ctx.student is not None:
            buffer = io.BytesIO()
            torch.save(ctx.student.state_dict(), buffer)
            stored["student.pt"] = buffer.getvalue()
        self.cache.store(key, state, stored)

    def _restore(self, ctx: Context, p: Pass, state: dict[str, Any]) -> None:
        from edgekd.models import build, load_state_dict

        entry: Path = state["dir"]
        ctx.metrics = state["metrics"]
        ctx.stages = state["stages"]
        for n in state["notes"]:
            ctx.note(n)
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
                ctx.student = build(ctx.student_spec, "student")
                ctx.student.load_state_dict(load_state_dict(entry / "student.pt", "student"))
                ctx.student.eval()
        ctx.events.emit("cache_hit", pass_=p.name, key=entry.name)


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
    _write_json(path, manifest)
    return path
