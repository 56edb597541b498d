"""The Python API. Every CLI verb is one call here.

import edgekd
result = edgekd.compile("model.yaml", target="x86-cpu")
result.artifacts["onnx_int8"], result.metrics["teacher"]["test_accuracy"], result.report_path
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from edgekd._version import __version__
from edgekd.backends.base import library_versions, runs_here
from edgekd.compiler.cache import Cache, input_key
from edgekd.compiler.manager import PassManager
from edgekd.compiler.plan import imported_code, load_model_config, plan, refuse_code, stage_classes
from edgekd.compiler.run_folder import RunLock, run_folder
from edgekd.config.model import ModelConfig
from edgekd.config.target import TargetConfig, list_targets, load_target, with_device
from edgekd.core.code_path import importable_from
from edgekd.core.device import check_amp, describe, on_device, resolve_device
from edgekd.core.errors import STORAGE_ERRNOS, ConfigError, EdgekdError, PipelineError, ProfilingError, storage_error
from edgekd.core.progress import EventLog, console, notes_to
from edgekd.data import TextModel, load_data
from edgekd.latency.measure import LatencyStats
from edgekd.models import zoo
from edgekd.models.build import build, check_input, load_weights
from edgekd.models.hf import generic_labels, load_tokenizer
from edgekd.models.text import packed_shape, token_inputs
from edgekd.pipeline.context import Context
from edgekd.train.loop import predict as predict_logits


@dataclass
class CompileResult:
    """What a compile produced: the run folder, its artifacts (name -> path), metrics and the report."""

    run_dir: Path
    artifacts: dict[str, Path]
    metrics: dict[str, Any]
    report_path: Path | None
    result_path: Path | None
    manifest_path: Path
    notes: list[str] = field(default_factory=list)

    @property
    def result(self) -> dict[str, Any]:
        """The parsed ``result.json``."""
        return json.loads(self.result_path.read_text()) if self.result_path else {}


def compile(
    config: str | Path | ModelConfig,
    target: str | Path | TargetConfig = "x86-cpu",
    out: str | Path = "runs",
    resume: bool | str | Path | None = None,
    use_cache: bool = True,
    quiet: bool = False,
    overrides: list[str] | None = None,
    nproc: int | None = None,
    device: str | None = None,
    allow_code: bool = True,
    nnodes: int | None = None,
    node_rank: int | None = None,
    rdzv_endpoint: str | None = None,
) -> CompileResult:
    """Validate everything, then run the passes of ``config`` for ``target`` into ``out/<run-id>/``.

    ``resume=True`` continues the latest run of this config (or give its folder); finished passes
    are restored from ``out/.cache`` after their files' sha256 are verified. ``use_cache=False``
    recomputes every pass (results are still cached for a later ``resume``). ``overrides`` are
    ``KEY=VALUE`` strings applied to the YAML before validation (``edgekd compile --set``).
    ``nproc`` runs every distill pass data-parallel in that many processes (``--nproc``); ``nnodes``,
    ``node_rank`` and ``rdzv_endpoint`` join that many machines, each running this compile (torchrun's flags).
    Training runs where model.yaml's ``device`` says (``auto``: a CUDA GPU when PyTorch sees one).
    ``device="user@host[:port]"`` measures latency on that device over SSH (the target's other device
    settings are kept). ``allow_code=False`` (``--no-code``) refuses a config that names Python code outside
    edgekd (``arch: "module:function"``, ``data.callable``) before importing anything of it; a config that names
    code is code, so compile configs from others only this way. result.json lists the code a compile imported.
    """
    cfg = config if isinstance(config, ModelConfig) else load_model_config(config, overrides)
    if not allow_code:
        refuse_code(cfg)
    importable_from(cfg.base_dir)  # builders and data callables next to model.yaml
    if nproc is not None and nproc < 1:
        raise PipelineError(f"--nproc {nproc}: must be >= 1", fix="give the number of training processes")
    scale_out = {"nproc": nproc, "nnodes": nnodes, "node_rank": node_rank, "rdzv_endpoint": rdzv_endpoint}
    data_parallel(cfg, {k: v for k, v in scale_out.items() if v is not None})
    train_device = resolve_device(cfg.device)
    check_amp(None if cfg.amp == "none" else cfg.amp, train_device)
    tgt = target if isinstance(target, TargetConfig) else load_target(target)
    if device:
        tgt = with_device(tgt, device)
    passes = plan(cfg)
    out = Path(out)
    # fail on bad models and data before any run folder exists
    teacher = build(cfg.teacher, "teacher", base_dir=cfg.base_dir)
    if cfg.teacher.checkpoint is not None:
        load_weights(teacher, cfg.resolve(cfg.teacher.checkpoint), "teacher")
    text = text_model(cfg, teacher)
    shape = packed_shape(teacher, cfg.data.max_length) if text else cfg.data.input_shape
    classes = len(text.label_names) if text else cfg.data.num_classes
    check_input(teacher, shape, classes, "teacher")
    library = cfg.teacher.arch.partition(":")[0] in zoo.LIBRARIES  # torchvision:/timm: build without weights
    own = (":" in cfg.teacher.arch and not library) or text is not None  # a builder or a folder brings its weights
    if cfg.teacher.checkpoint is None and not own:
        console.print("[yellow]warning:[/] teacher.checkpoint not set: the teacher is randomly initialised")
    student = None
    if cfg.student is not None:
        torch.manual_seed(cfg.seed)  # the student's random initialisation is part of what the seed fixes
        student = build(cfg.student, "student", teacher=teacher, base_dir=cfg.base_dir)
        if cfg.student.checkpoint is not None:
            load_weights(student, cfg.resolve(cfg.student.checkpoint), "student")
        check_input(student, shape, classes, "student")
    for i, p in enumerate(passes[1 : 1 + len(cfg.passes)]):
        p.check(f"passes[{i}].{p.name}", teacher, student)
        p.check_target(f"passes[{i}].{p.name}", tgt)
    data = load_data(cfg.data, cfg.calibration, cfg.base_dir, cfg.seed, text)
    if data.unlabelled:  # teacher as annotator
        with torch.no_grad(), on_device(teacher, train_device):
            data.label_with(lambda x: predict_logits(teacher, x))

    code = imported_code(cfg)
    run_dir = run_folder(out, cfg, resume)
    with RunLock(run_dir):
        events = EventLog(run_dir / "events.jsonl")
        events.emit(
            "compile_start",
            version=__version__,
            config=str(cfg.source_file),
            target=tgt.name,
            resume=bool(resume),
            use_cache=use_cache,
        )
        if not quiet:
            console.print(f"edgekd {__version__}: {cfg.name} → {tgt.name}, run folder {run_dir}")
        ctx = Context(
            config=cfg,
            target=tgt,
            run_dir=run_dir,
            data=data,
            teacher=teacher,
            student=student,
            student_spec=cfg.student,
            events=events,
            quiet=quiet,
            train_device=str(train_device),
            amp=None if cfg.amp == "none" else cfg.amp,
            capabilities={"teacher", "data"} | ({"student"} if student is not None else set()),
        )
        ctx.metrics["code"] = code
        # where training ran changes its numbers: the resolved device (not "auto") is an input
        key = input_key(
            cfg, tgt, code, data.content_sha256(), {**library_versions(), "train_device": describe(train_device)}
        )
        manager = PassManager(passes, Cache(out / ".cache", read=use_cache), key)
        try:
            with notes_to(ctx.note):  # backend code without the Context can add report notes (run_note)
                manager.run(ctx)
        except OSError as exc:
            if exc.errno not in STORAGE_ERRNOS:
                raise
            err = storage_error(exc, exc.filename or run_dir)
            with contextlib.suppress(EdgekdError):
                events.emit("compile_failed", error=str(err), type="StorageError")
            raise err from exc
        except BaseException as exc:
            with contextlib.suppress(EdgekdError):
                events.emit("compile_failed", error=str(exc), type=type(exc).__name__)
            raise
        events.emit("compile_end", artifacts=sorted(ctx.artifacts))
    arts = {n: run_dir / a.path for n, a in ctx.artifacts.items()}
    return CompileResult(
        run_dir=run_dir,
        artifacts=arts,
        metrics=ctx.metrics,
        report_path=arts.get("report_md"),
        result_path=arts.get("result_json"),
        manifest_path=run_dir / "manifest.json",
        notes=ctx.notes,
    )


def text_model(cfg: ModelConfig, teacher: torch.nn.Module) -> TextModel | None:
    """What text data needs of a text teacher (its tokenizer, inputs and classes); None for other teachers."""
    inputs = token_inputs(teacher)
    if inputs is None or cfg.teacher.path is None:
        return None
    folder = cfg.resolve(cfg.teacher.path)
    names = teacher.label_names  # type: ignore[attr-defined]
    return TextModel(load_tokenizer(folder), folder, inputs, names, generic_labels(names))


def data_parallel(cfg: ModelConfig, settings: dict[str, Any]) -> None:
    """Set ``settings`` (nproc, nnodes, node_rank, rdzv_endpoint: the command line's) on every pass that trains
    data-parallel (distill), validated as if model.yaml had said them."""
    if not settings:
        return
    for i, entry in enumerate(cfg.passes):
        fields = type(entry.config).model_fields
        if not all(k in fields for k in settings):
            continue
        try:
            entry.config = type(entry.config).model_validate({**entry.config.model_dump(), **settings})
        except ValidationError as exc:
            flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items())
            problems = [f"passes[{i}].{entry.name}: {e['msg']}" for e in exc.errors()]
            raise ConfigError(
                f"{flags}: " + "; ".join(problems), fix="see edgekd compile --help", problems=problems
            ) from None


@dataclass
class Ranking:
    """:func:`search` over your own candidates: every candidate (``index`` into the list given), best first."""

    ranked: list[dict[str, Any]]
    pareto: list[dict[str, Any]]  # no other candidate has both a higher score and a lower cost
    chosen: dict[str, Any] | None  # the best within the (first) budget (None: none meets it)
    proxy: str
    cost: str  # latency_ms (measured where the target says) or macs
    # several budgets (a list under latency_ms or macs): one {"budget", "chosen"} per budget, else None
    per_budget: list[dict[str, Any]] | None = None
    # under a measured latency budget, the choices measured again (search pass's ``confirm``), else None
    confirmed: list[dict[str, Any]] | None = None


def search(
    config: str | Path | list[Any],
    target: str | Path | TargetConfig = "x86-cpu",
    out: str | Path = "runs",
    overrides: list[str] | None = None,
    quiet: bool = False,
    allow_code: bool = True,
    *,
    teacher: torch.nn.Module | None = None,
    batches: Any = None,
    proxy: str = "params",
    budget: dict[str, float | list[float]] | None = None,
    seeds: int = 1,
    precision: str = "fp32",
    confirm: int = 2,
) -> Any:
    """Run only the search pass(es) of ``config`` (and the report); ``metrics["search"]`` holds the Pareto set.
    ``allow_code`` as for :func:`compile`.

    With a list of candidates instead of a config (modules or zero-argument builders; see :func:`score`), rank them
    against ``teacher`` on ``batches`` and return a :class:`Ranking`: the score, params, MACs and, when
    ``budget`` has ``latency_ms``, the latency on ``target`` (this host measured, or the target's predictor) of
    each, timed as the kind of file the target ships at ``precision`` (fp32 | int8); the Pareto set; the best
    candidate within ``budget`` (``params``, ``macs``, ``latency_ms``). A list under ``latency_ms`` or ``macs``
    is several budgets at once (AutoDistil): each candidate is timed once, ``per_budget`` holds the best within each,
    ``chosen`` and ``within_budget`` are the first's. Under a measured latency budget each choice is measured
    ``confirm`` more times and kept only if the median of its readings stays within the budget, else the next best
    is tried (``confirmed`` lists the checks; ``confirm=0`` trusts one reading)."""
    if isinstance(config, list | tuple):
        if confirm < 0:
            raise ConfigError(
                f"confirm must be >= 0, got {confirm}", fix="confirm=2 (the default) or 0 to trust one reading"
            )
        if teacher is None or batches is None:
            raise ConfigError("search over candidates needs teacher= and batches=", fix="pass both (see README)")
        return _rank(list(config), teacher, batches, proxy, budget or {}, seeds, target, precision, confirm)
    cfg = load_model_config(config, overrides)
    kept = [p for p in cfg.passes if p.name == "search"]
    if not kept:
        raise PipelineError(f"{config}: passes has no search entry", fix="add - search: {...} to passes (see README)")
    cfg.passes = kept
    return compile(cfg, target=target, out=out, quiet=quiet, allow_code=allow_code)


def _rank(
    candidates: list[Any], teacher: torch.nn.Module, batches: Any, proxy: str, budget: dict[str, Any],
    seeds: int, target: str | Path | TargetConfig, precision: str = "fp32", confirm: int = 2,
) -> Ranking:  # fmt: skip
    from edgekd.core.schema import validation_problems
    from edgekd.latency.search_latency import candidate_latency
    from edgekd.models.count import count_macs, count_params
    from edgekd.stages.search.confirm import confirm_choice
    from edgekd.stages.search.evolution import Evaluated, pareto
    from edgekd.stages.search.proxies import build_seeded
    from edgekd.stages.search.stage import CONFIRM_TRIES, Budget

    try:
        limits = Budget.model_validate(budget)
    except ValidationError as exc:
        problems = validation_problems(exc, Budget, "budget")
        raise ConfigError(
            "; ".join(problems),
            fix="use params, macs, latency_ms (numbers; a list under one of macs or latency_ms for several budgets)",
            problems=problems,
        ) from None
    shape = tuple(_batch_pairs(batches)[0][0].shape[1:])
    models = [c if isinstance(c, torch.nn.Module) else build_seeded(c, 0) for c in candidates]
    scores = score(models, teacher, batches, proxy, seeds)
    timed = limits.latency_ms is not None
    measure = None
    again = False  # measured latencies are read again before a choice is accepted; predicted ones are not
    if timed:
        lat = candidate_latency(target if isinstance(target, TargetConfig) else load_target(target), precision)
        if lat.fn is None:
            raise PipelineError(
                f"budget latency_ms: {target} cannot be measured here and has no latency predictor",
                fix="budget params/macs instead, or build the target's predictor (edgekd profile --build-predictor)",
            )
        measure = lat.fn
        again = lat.source == "measured-host" and confirm > 0
    rows = []
    for i, (m, s) in enumerate(zip(models, scores, strict=True)):  # each candidate timed once, for every budget
        row = {"index": i, "score": s, "params": count_params(m), "macs": count_macs(m, shape)}
        row["latency_ms"] = measure(m, shape) if measure is not None else None
        rows.append(row)

    def within(row: dict[str, Any], limit: Budget) -> bool:
        return all(row[k] is not None and row[k] <= v for k, v in limit.model_dump(exclude_none=True).items())

    each = limits.each()
    for row in rows:
        row["within_budget"] = within(row, each[0])
    cost = "latency_ms" if timed else "macs"
    ranked = sorted(rows, key=lambda r: -r["score"])
    # the search pass's Pareto rule (cost: latency when measured, else MACs), over these rows
    evaluated = [Evaluated((r["index"],), {}, r["score"], 0.0, r["params"], r["macs"], r["latency_ms"]) for r in rows]
    front = [rows[e.cand[0]] for e in pareto(evaluated)]
    best = [next((r for r in ranked if within(r, limit)), None) for limit in each]
    checks: list[dict[str, Any]] = []
    if again and measure is not None:
        readings: dict[Any, list[float]] = {}
        for b, limit in enumerate(each):
            fits = [r for r in ranked if within(r, limit)]
            chosen, made = confirm_choice(
                fits[:CONFIRM_TRIES],
                float(limit.latency_ms),  # type: ignore[arg-type]
                confirm,
                key=lambda r: r["index"],
                first=lambda r: r["latency_ms"],
                again=lambda r: measure(models[r["index"]], shape),
                label=lambda r: f"candidate {r['index']}",
                readings=readings,
            )
            checks += [{"budget": b, **m.record()} for m in made]
            best[b] = chosen
            if b == 0:  # over the first budget when measured again: not within it after all
                for row, m in zip(fits, made, strict=False):
                    row["within_budget"] = m.within
        for row in rows:
            if row["index"] in readings:
                row["latency_readings_ms"] = readings[row["index"]]
    per_budget = (
        [{"budget": limit.model_dump(exclude_none=True), "chosen": b} for limit, b in zip(each, best, strict=True)]
        if limits.swept()
        else None
    )
    return Ranking(ranked, front, best[0], proxy, cost, per_budget, checks or None)


def targets() -> list[TargetConfig]:
    """Every target profile edgekd can find (see ``edgekd.config.target.search_dirs``)."""
    return list_targets()


def profile(
    model: str | Path,
    target: str | Path | TargetConfig = "x86-cpu",
    runs: int | None = None,
    warmup: int | None = None,
    device: str | None = None,
    per_layer: int = 0,
    threads: int | None = None,
    predict: bool = True,
) -> list[LatencyStats]:
    """Latency of an exported model file on ``target``, measured as the profile pass measures: on its SSH device (or
    ``device="user@host[:port]"``) when it has one, else on this host. Each result's ``where`` / ``on_target`` say
    which; when a device cannot be used (and ``device.required`` is false) a warning is printed and the host
    measures instead. Where the host is a stand-in and the target has a latency predictor, ``predicted`` holds the
    target's predicted figure (``predict=False``: not)."""
    from edgekd.latency.for_target import measure_for_target, predicted_for

    tgt = target if isinstance(target, TargetConfig) else load_target(target)
    if device:
        tgt = with_device(tgt, device)
    path = Path(model)
    if not path.is_file():
        raise ProfilingError(
            f"{path}: file not found", fix="give the path of an exported model, e.g. runs/<id>/student.onnx"
        )
    if not runs_here(path):
        raise ProfilingError(
            f"{path}: only .onnx (ONNX Runtime) and .tflite (LiteRT) files can be profiled here",
            fix="give student.onnx or student.<precision>.tflite from a run folder; TensorRT engines are built and "
            "timed on the device by build_engines.sh / the device profiler",
        )
    m = measure_for_target(
        tgt,
        [path],
        tgt.timing(warmup, runs, threads=threads, per_layer=per_layer),
        note=lambda text: console.print(f"[yellow]warning:[/] {text}"),
    )
    if predict and not m.on_target:
        predicted = predicted_for(tgt, [path], per_layer, note=lambda text: None)  # no predictor: nothing to add
        for s in m.stats:
            s.predicted = predicted.get(str(path))
    return m.stats


def latency_report(
    records: list[tuple[str, dict[str, Any]]], target: str, html: str | Path | None = None
) -> tuple[str, Path | None]:
    """The latency section ``edgekd profile`` prints, for (label, latency record) pairs: its Markdown, and with
    ``html`` the same section written as a self-contained HTML page (returns its path)."""
    from edgekd.core.artifacts import atomic_write_bytes
    from edgekd.document.html import document_to_html
    from edgekd.document.latency import latency_sections
    from edgekd.document.markdown import sections_to_markdown
    from edgekd.document.model import Document

    sections = latency_sections(records, f"Target {target}, batch 1.")
    figures = f"Figure in {Path(html).name}" if html else "Figure left out (only an HTML page shows it: --html FILE)"
    markdown = "\n".join(sections_to_markdown(sections, figures=figures)).rstrip()
    if html is None:
        return markdown, None
    title = "edgekd profile: " + ", ".join(label.strip("`") for label, _ in records)
    return markdown, atomic_write_bytes(html, document_to_html(Document(title, sections)).encode())


def predict(model: str | Path, target: str | Path | TargetConfig = "x86-cpu", per_layer: int = 5) -> dict[str, Any]:
    """The latency record of a model file (fp32 or INT8 ONNX, fp32 or INT8 ``.tflite``) predicted by ``target``'s
    latency predictor of that kind of file (ProfilingError if it has none)."""
    from edgekd.core.errors import ProfilingError
    from edgekd.latency.predictor.files import file_kind, target_artifact
    from edgekd.latency.predictor.lookup import load_for_target, predictor_path

    tgt = target if isinstance(target, TargetConfig) else load_target(target)
    kind = file_kind(model)
    pred = load_for_target(tgt, kind)
    if pred is None:
        raise ProfilingError(
            f"target {tgt.name} has no {kind.key} latency predictor ({predictor_path(tgt, kind)}) for {model}",
            fix=f"build it: edgekd profile --build-predictor --target {tgt.name} --precision {kind.precision}"
            + ("" if kind.artifact == target_artifact(tgt) else f" (on a target that ships {kind.describe} files)"),
        )
    return pred.predict(model, tgt.profile.batch).to_latency(per_layer)


def report(run_dir: str | Path) -> Path:
    """Re-render ``report.md`` and ``report.html`` of a finished run from its ``result.json``; returns report.md."""
    from edgekd.core.artifacts import atomic_write_bytes
    from edgekd.stages.report.render import render_html, render_markdown

    run = Path(run_dir)
    result_file = run / "result.json"
    if not result_file.is_file():
        raise ConfigError(
            f"{run}: no result.json", fix="give a finished run folder (its report pass wrote result.json)"
        )
    try:
        result = json.loads(result_file.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{result_file}: not valid JSON ({exc})", fix="re-run the compile with --resume") from exc
    if not isinstance(result, dict) or "target" not in result or "config" not in result:
        raise ConfigError(f"{result_file}: not an edgekd result.json", fix="give the run folder of an edgekd compile")
    stages = stage_classes([p.get("pass", "") for p in result.get("passes", []) if isinstance(p, dict)])
    path = run / "report.md"
    atomic_write_bytes(path, render_markdown(result, stages).encode())
    atomic_write_bytes(run / "report.html", render_html(result, stages).encode())
    return path


def build_predictor(
    target: str | Path | TargetConfig = "x86-cpu",
    device: str | None = None,
    models: int = 60,
    repeats: int = 3,
    runs: int | None = None,
    threads: int | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    quiet: bool = False,
    precision: str = "fp32",
) -> tuple[Any, Path]:
    """Measure random calibration models on ``target`` (its SSH device, ``device``, or this host when the target
    runs here), written as the files it ships at ``precision`` (fp32 | int8: fp32 or QDQ INT8 ONNX for ONNX Runtime
    and TensorRT targets, fp32 or full-INT8 ``.tflite`` for LiteRT targets), fit its latency predictor of that kind
    and save it (default: ``<target>.predictor.json`` for fp32 ONNX, ``<target>.<kind>.predictor.json`` otherwise,
    beside the target file, or the target's ``predictor:`` path). Returns (LatencyPredictor, path)."""
    from edgekd.latency.predictor.calibrate import build_predictor as build
    from edgekd.latency.predictor.files import PRECISIONS, PredictorKind, target_artifact
    from edgekd.latency.predictor.lookup import predictor_path

    tgt = target if isinstance(target, TargetConfig) else load_target(target)
    if device:
        tgt = with_device(tgt, device)
    if threads is not None:
        tgt = tgt.model_copy(deep=True)
        tgt.runtime.threads = threads
    if precision not in PRECISIONS:
        raise ConfigError(
            f"--precision {precision!r}: latency predictors are calibrated for {', '.join(PRECISIONS)}",
            fix="give --precision fp32 or --precision int8 (fp16 files run as fp32 on CPU runtimes)",
        )
    if precision == "int8" and "int8" not in tgt.precisions:
        raise ConfigError(
            f"--precision {precision}: target {tgt.name} ships {', '.join(tgt.precisions)}",
            fix=f"give one of its precisions (--precision {tgt.precisions[0]})",
        )
    kind = PredictorKind(target_artifact(tgt), precision)
    path = Path(out) if out is not None else predictor_path(tgt, kind)
    if not quiet:
        console.print(
            f"building the {kind.key} latency predictor of {tgt.name}: {models} calibration models ({kind.describe}) "
            f"x {repeats} repeats"
        )
    pred = build(
        tgt,
        models=models,
        repeats=repeats,
        seed=seed,
        runs=runs,
        on_progress=None if quiet else (lambda d, n: console.print(f"  measured {d}/{n}")),
        kind=kind,
        on_written=None if quiet else _every_tenth(lambda d, n: console.print(f"  written {d}/{n} files")),
    )
    pred.save(path)
    return pred, path


def _every_tenth(show: Callable[[int, int], None]) -> Callable[[int, int], None]:
    """``show`` for every tenth step and the last one."""

    def step(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            show(done, total)

    return step


def init(path: str | Path = "model.yaml", force: bool = False) -> Path:
    """Write a commented starter model.yaml at ``path`` (refused when it exists, unless ``force``)."""
    from edgekd.config.starter import write_starter

    return write_starter(path, force=force)


def _batch_pairs(batches: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` or a list of such pairs, as :func:`score` and :func:`search` take them."""
    pairs = [batches] if isinstance(batches, tuple) else list(batches)
    if not pairs or any(not (isinstance(p, tuple) and len(p) == 2) for p in pairs):
        raise ConfigError("batches: give an (x, y) pair of tensors or a list of them", fix="e.g. batches=(x, y)")
    return pairs


def score(
    candidates: list[Any],
    teacher: torch.nn.Module,
    batches: Any,
    proxy: str = "diswot",
    seeds: int = 1,
) -> list[float]:
    """Score your own candidate students without training them, as the search pass does.

    ``candidates``: ``nn.Module`` instances (scored with the weights they have; DisWOT and Zen score gaussian
    re-initialised copies) or zero-argument builders (called with the global generator seeded, so their default
    initialisation depends on the seed only). ``batches``: one ``(x, y)`` pair of tensors or a list of them (real
    images, labels as class indices). ``proxy``: diswot (against ``teacher``), params, macs, grad_norm, snip,
    synflow, naswot or zen. Returns one score per candidate, higher is better: the mean over batches and
    ``seeds`` seeds; ``-inf`` for a candidate that is degenerate on any of them (dead, constant output). The
    classifier and the feature map are found by forward hooks, so any image classifier works.
    """
    from edgekd.stages.search.proxies import PROXIES, ProbeBatch, build_seeded
    from edgekd.stages.search.proxies import score as proxy_score
    from edgekd.stages.search.stage import aggregate

    if proxy not in PROXIES:
        raise ConfigError(f"proxy {proxy!r} is not one of {', '.join(PROXIES)}", fix="pick one of those proxies")
    if seeds < 1:
        raise ConfigError(f"seeds {seeds}: must be >= 1", fix="give the number of seeds to average over")
    pairs = _batch_pairs(batches)
    with torch.no_grad():
        num_classes = int(predict_logits(teacher, pairs[0][0][:1]).shape[1])
    probes = [ProbeBatch(x, y.long(), num_classes) for x, y in pairs]
    out = []
    for i, cand in enumerate(candidates):
        values = []
        for seed in range(seeds):
            model = cand if isinstance(cand, torch.nn.Module) else build_seeded(cand, seed)
            if not isinstance(model, torch.nn.Module):
                raise ConfigError(
                    f"candidates[{i}]: a builder returned {type(model).__name__}, not a torch.nn.Module",
                    fix="give modules or zero-argument functions returning one",
                )
            values += [proxy_score(proxy, model, b, teacher, seed=seed * len(probes) + j) for j, b in enumerate(probes)]
        out.append(aggregate(values)[0])
    return out
