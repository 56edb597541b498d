"""``edgekd`` command line: a thin shell over :mod:`edgekd.api`.

User errors (:class:`edgekd.core.errors.EdgekdError`) print as ``error [Type]: ...`` without a traceback and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from edgekd._version import __version__
from edgekd.core.errors import EdgekdError

#: files holding other libraries' output of a command that failed (kept, named after the error)
_FAILED_LOGS: list[Path] = []


@contextlib.contextmanager
def _libraries_quiet(a: argparse.Namespace) -> Iterator[list[Path]]:
    """Unless ``--verbose``: other libraries' output is kept off the terminal for the block; the yielded list gets
    the path of the file holding it (the caller files it in the run's events.jsonl). If the block fails, the file
    is kept and named."""
    from edgekd.core.library_output import library_output_captured

    if getattr(a, "verbose", False):
        yield []
        return
    kept: list[Path] = []
    try:
        with library_output_captured() as path:
            kept.append(path)
            yield kept
    except BaseException:
        if kept and kept[0].stat().st_size:
            _FAILED_LOGS.append(kept[0])  # named after the error (main): the error comes first
        raise
    else:
        kept[0].unlink(missing_ok=True)


def _file_library_output(kept: list[Path], run_dir: Path) -> None:
    from edgekd.core.library_output import library_lines
    from edgekd.core.progress import EventLog

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    lines = library_lines(kept[0]) if kept else []
    if lines:
        EventLog(run_dir / "events.jsonl").emit("library_output", lines=lines)


VERBOSE = "show other libraries' output (TensorFlow Lite, torchao, ...); else it goes to the run's events.jsonl"


def _cmd_compile(a: argparse.Namespace) -> int:
    from edgekd import api

    resume: bool | str | None = None
    if a.resume is not None:
        resume = True if a.resume == "latest" else a.resume
    with _libraries_quiet(a) as kept:
        res = api.compile(
            a.config,
            target=a.target,
            out=a.out,
            resume=resume,
            use_cache=not a.no_cache,
            quiet=a.quiet,
            overrides=a.set,
            nproc=a.nproc,
            nnodes=a.nnodes,
            node_rank=a.node_rank,
            rdzv_endpoint=a.rdzv_endpoint,
            device=a.device,
            allow_code=not a.no_code,
        )
        _file_library_output(kept, res.run_dir)
    if a.json:
        print(json.dumps(res.result, indent=2))
    else:
        print(f"run folder: {res.run_dir}")
        for name, path in res.artifacts.items():
            print(f"  {name:12s} {path}")
        if res.report_path:
            print(f"report: {res.report_path}")
    return 0


def _cmd_search(a: argparse.Namespace) -> int:
    from edgekd import api

    with _libraries_quiet(a) as kept:
        res = api.search(a.config, target=a.target, out=a.out, overrides=a.set, quiet=a.quiet, allow_code=not a.no_code)
        _file_library_output(kept, res.run_dir)
    s = res.metrics["search"]
    if a.json:
        print(json.dumps(s, indent=2))
        return 0
    cost = "latency ms" if s["latency"] else "MACs"
    print(
        f"{s['proxy']} search, {s['evaluated_unique']} candidates scored of {s['space_size']} "
        f"({s['seconds']:.0f} s); Pareto set (score vs {cost}):"
    )
    width = max(len(r["label"]) for r in s["pareto"])
    print(f"  {'candidate':{width}s} {'score':>10s} {'params':>8s} {'MACs':>10s} {'latency ms':>10s}")

    def line(r: dict, mark: str = "") -> str:
        lat = f"{r['latency_ms']:.3f}" if r["latency_ms"] is not None else "-"
        sc = f"{r['score']:10.4g}" if r["score"] is not None else f"{'worst':>10s}"
        return f"  {r['label']:{width}s} {sc} {r['params']:8d} {r['macs']:10d} {lat:>10s}{mark}"

    for r in s["pareto"]:
        print(line(r, "  <- chosen" if r["label"] == s["chosen"]["label"] else ""))
    if s.get("per_budget"):
        print("One student per budget (the compile trains the first):")
        for b in s["per_budget"]:
            limit = ", ".join(f"{k} <= {v:g}" for k, v in b["budget"].items())
            print(f"  {limit}:")
            print(line(b["chosen"]))
    if s.get("confirmed"):
        print("Measured again before it was chosen (median of every reading):")
        for m in s["confirmed"]:
            verdict = "within" if m["within"] else "OVER, not chosen"
            print(f"  {m['label']}: {m['median_ms']:.4g} ms of {m['budget_ms']:g} ms budget, {verdict}")
    print(f"search.json: {res.artifacts['search_json']}")
    return 0


def _cmd_targets(a: argparse.Namespace) -> int:
    from edgekd import api

    ts = api.targets()
    if a.json:
        print(json.dumps([t.model_dump(mode="json") for t in ts], indent=2))
        return 0
    for t in ts:
        alias = f" (aliases: {', '.join(t.aliases)})" if t.aliases else ""
        print(
            f"{t.name}{alias}\n    {t.description}\n    backends {', '.join(t.backends)}; precisions "
            f"{', '.join(t.precisions)}; device {t.device.kind}; file {t.source_file}"
        )
    return 0


def _cmd_profile(a: argparse.Namespace) -> int:
    from edgekd import api
    from edgekd.core.errors import ConfigError

    if a.build_predictor:
        pred, path = api.build_predictor(
            a.target, device=a.device, models=a.models, repeats=a.repeats, runs=a.runs, threads=a.threads,
            out=a.out, quiet=a.json, precision=a.precision,
        )  # fmt: skip
        loo = pred.fit_quality.get("leave_one_out", {})
        if a.json:
            doc = {"path": str(path), "kind": pred.kind.key, "fit": pred.fit_quality, "device": pred.device}
            print(json.dumps(doc, indent=2))
            return 0
        print(f"latency predictor: {path}")
        print(
            f"  {pred.kind.describe} files measured on {pred.device.get('where')}; "
            f"{pred.fit_quality.get('models')} models fitted"
        )
        print(
            f"  leave-one-out: {100 * loo.get('within_10pct', 0):.0f}% within ±10%, median |error| "
            f"{100 * loo.get('median_abs_rel_error', 0):.1f}%"
        )
        return 0
    if a.model is None:
        raise ConfigError("edgekd profile: give a model file, or --build-predictor", fix="edgekd profile model.onnx")
    with _libraries_quiet(a):
        if a.predict:
            d = api.predict(a.model, target=a.target, per_layer=a.per_layer or 5)
            d["path"] = a.model
        else:
            (s,) = api.profile(
                a.model, target=a.target, runs=a.runs, warmup=a.warmup, device=a.device, per_layer=a.per_layer,
                threads=a.threads,
            )  # fmt: skip
            d = s.to_dict()
    if a.json:
        print(json.dumps(d, indent=2, default=str))
        return 0
    markdown, html = api.latency_report([(f"`{a.model}`", d)], a.target, html=a.html)
    print(markdown)
    if html is not None:
        print(f"\nreport: {html}")
    return 0


def _cmd_report(a: argparse.Namespace) -> int:
    from edgekd import api

    md = api.report(a.run)
    print(md)
    print(md.with_name("report.html"))
    return 0


def _cmd_init(a: argparse.Namespace) -> int:
    from edgekd.config.starter import write_starter

    path = write_starter(a.path, force=a.force)
    print(f"wrote {path}; edit teacher.checkpoint, then: edgekd compile {path} --target x86-cpu")
    return 0


NO_CODE = (
    "refuse a model.yaml that names Python code outside edgekd (arch: module:function, data.callable): for "
    "compiling configs written by others"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgekd", description="Compress a PyTorch teacher into a fast student for an edge target."
    )
    p.add_argument("--version", action="version", version=f"edgekd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="run the passes of model.yaml for a target")
    c.add_argument("config", help="model.yaml")
    c.add_argument("--target", default="x86-cpu", help="target name, alias or YAML path (see `edgekd targets`)")
    c.add_argument("--out", default="runs", help="folder for run folders and the pass cache (default: runs)")
    c.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="RUN_DIR",
        help="continue the latest run of this config, or RUN_DIR; finished passes are not re-run",
    )
    c.add_argument("--no-cache", action="store_true", help="re-run every pass even when a cached result exists")
    c.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="run distill data-parallel in N processes on this machine (DistributedDataParallel: one GPU each "
        "with nccl when device is CUDA, CPU processes with gloo otherwise)",
    )
    c.add_argument(
        "--nnodes", type=int, default=None, metavar="M", help="distill on M machines, each running this command"
    )
    c.add_argument("--node-rank", type=int, default=None, metavar="R", help="this machine's index, 0 ... M-1")
    c.add_argument(
        "--rdzv-endpoint", default=None, metavar="HOST:PORT", help="node 0's address and a free port on it (--nnodes)"
    )
    c.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model.yaml value, e.g. --set passes[0].distill.epochs=10 (repeatable)",
    )
    c.add_argument("--json", action="store_true", help="print result.json instead of a summary")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    c.add_argument("-v", "--verbose", action="store_true", help=VERBOSE)
    c.add_argument(
        "--device",
        default=None,
        metavar="USER@HOST[:PORT]",
        help="measure latency on this device over SSH (key auth, host key must be in known_hosts)",
    )
    c.add_argument("--no-code", action="store_true", help=NO_CODE)
    c.set_defaults(func=_cmd_compile)

    s = sub.add_parser("search", help="run only the student search of model.yaml and print its Pareto set")
    s.add_argument("config")
    s.add_argument("--target", default="x86-cpu")
    s.add_argument("--out", default="runs")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--json", action="store_true")
    s.add_argument("-q", "--quiet", action="store_true")
    s.add_argument("-v", "--verbose", action="store_true", help=VERBOSE)
    s.add_argument("--no-code", action="store_true", help=NO_CODE)
    s.set_defaults(func=_cmd_search)

    t = sub.add_parser("targets", help="list the target profiles")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=_cmd_targets)

    pr = sub.add_parser("profile", help="latency of an exported model on a target, or --build-predictor for the target")
    pr.add_argument("model", nargs="?", default=None, help="an .onnx (ONNX Runtime) or .tflite (LiteRT) file")
    pr.add_argument("--target", default="x86-cpu")
    pr.add_argument("--runs", type=int, default=None)
    pr.add_argument("--warmup", type=int, default=None)
    pr.add_argument("--json", action="store_true")
    pr.add_argument("-v", "--verbose", action="store_true", help="show other libraries' output (TensorFlow Lite, ...)")
    pr.add_argument(
        "--device",
        default=None,
        metavar="USER@HOST[:PORT]",
        help="measure latency on this device over SSH (key auth, host key must be in known_hosts)",
    )
    pr.add_argument("--per-layer", type=int, default=0, metavar="K", help="also show the K slowest layers")
    pr.add_argument("--html", default=None, metavar="FILE", help="also write the latency section as an HTML page")
    pr.add_argument("--predict", action="store_true", help="predict with the target's latency predictor, no run")
    pr.add_argument(
        "--build-predictor",
        action="store_true",
        help="measure calibration models on the target (its device, or this host) and write its latency predictor",
    )
    pr.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="--build-predictor: calibrate with the target's files at this precision (int8: QDQ ONNX or full-INT8 "
        ".tflite, as the target ships; default fp32)",
    )
    pr.add_argument("--models", type=int, default=60, help="--build-predictor: calibration models (default 60)")
    pr.add_argument("--repeats", type=int, default=3, help="--build-predictor: measurements per model (median)")
    pr.add_argument("--threads", type=int, default=None, help="runtime threads (default: the target's)")
    pr.add_argument(
        "--out", default=None, help="--build-predictor: predictor file (default: <target>.predictor.json beside it)"
    )
    pr.set_defaults(func=_cmd_profile)

    r = sub.add_parser("report", help="re-render report.md and report.html of a finished run")
    r.add_argument("run", help="runs/<run-id>")
    r.set_defaults(func=_cmd_report)

    i = sub.add_parser("init", help="write a commented starter model.yaml")
    i.add_argument("path", nargs="?", default="model.yaml")
    i.add_argument("--force", action="store_true")
    i.set_defaults(func=_cmd_init)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except EdgekdError as exc:
        print(f"error [{type(exc).__name__}]: {exc}", file=sys.stderr)
        for log in _FAILED_LOGS:
            print(f"(output of other libraries during this command: {log})", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished passes are cached: re-run with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
