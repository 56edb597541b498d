"""Standalone latency runner: copy this one file to a device and run it with the device's Python.

    python runner.py MODEL [MODEL ...] --warmup 20 --runs 100 --rounds 5 --threads 2 --batch 1

Models are measured interleaved (round r runs runs/rounds iterations of each model in turn) so that side-by-side
comparisons share the machine's noise. One JSON document goes to stdout; progress goes to stderr as JSON lines
``{"progress": done, "total": N}``. Exit code 2: bad arguments or a model this runner cannot measure.

Imports only the standard library, numpy and the runtime a model needs. To add a runtime (e.g. ``.tflite``), write a
loader returning a ``Loaded`` and register it in ``RUNTIMES``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RUNNER_VERSION = 1


class RunnerError(Exception):
    """A problem with the arguments or a model (exit code 2)."""


@dataclass
class Loaded:
    """A ready model: ``run()`` does one inference on prepared inputs; ``info`` describes the runtime."""

    run: Callable[[], Any]
    info: dict[str, Any] = field(default_factory=dict)
    #: optional: per_layer(runs, k) -> the k slowest layers over ``runs`` profiled inferences (see ``--per-layer``)
    per_layer: Callable[[int, int], list[dict[str, Any]]] | None = None
    #: where ``per_layer`` is None: why this runtime gives no per-layer profile (said in the output when asked for)
    per_layer_unsupported: str = ""


#: ``--seq-len``: the length given to a dynamic sequence dimension (dimension 1 of a text model's token inputs)
SEQUENCE: dict[str, int | None] = {"value": None}


def _resolve_shape(path: str, name: str, shape: list[Any], batch: int, tokens: bool = False) -> tuple[int, ...]:
    dims: list[int] = []
    for i, d in enumerate(shape):
        if tokens and i == 1 and not (isinstance(d, int) and d > 0):
            if SEQUENCE["value"] is None:
                raise RunnerError(f"{path}: input '{name}' has a dynamic sequence length; give --seq-len N")
            dims.append(int(SEQUENCE["value"]))
            continue
        if isinstance(d, int) and d > 0:
            if i == 0 and d != batch:
                raise RunnerError(
                    f"{path}: input '{name}' has a fixed batch of {d}, asked for --batch {batch}; "
                    f"use --batch {d} or export the model with a dynamic batch"
                )
            dims.append(d)
        elif i == 0:
            dims.append(batch)
        else:
            raise RunnerError(
                f"{path}: input '{name}' has a dynamic dimension {i} ({d!r}) in {shape}; "
                "export the model with fixed spatial dimensions"
            )
    return tuple(dims)


_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
}


def load_onnx(path: str, threads: int, batch: int) -> Loaded:
    """An onnxruntime CPU session over ``path`` with random inputs of its input shapes at ``batch``."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise RunnerError(f"{path}: onnxruntime is not installed ({exc}); pip install onnxruntime") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed: dict[str, np.ndarray] = {}
    for inp in session.get_inputs():
        dtype = _ORT_DTYPES.get(inp.type)
        if dtype is None:
            raise RunnerError(f"{path}: input '{inp.name}' has unsupported type {inp.type}")
        tokens = inp.type in ("tensor(int64)", "tensor(int32)")
        shape = _resolve_shape(path, inp.name, list(inp.shape), batch, tokens)
        if np.issubdtype(dtype, np.floating):
            feed[inp.name] = rng.standard_normal(shape).astype(dtype)
        elif "mask" in inp.name:  # every position attended: the full sequence length is computed
            feed[inp.name] = np.ones(shape, dtype=dtype)
        elif inp.name == "input_ids":  # ids 1-4 exist in every vocabulary; an embedding lookup costs the same for any
            feed[inp.name] = rng.integers(1, 5, size=shape).astype(dtype)
        else:
            feed[inp.name] = np.zeros(shape, dtype=dtype)
    outputs = [o.name for o in session.get_outputs()]

    def per_layer(runs: int, k: int) -> list[dict[str, Any]]:
        # a second session with onnxruntime's profiler on, so the timed session above is not slowed by it
        import tempfile

        popts = ort.SessionOptions()
        popts.intra_op_num_threads = threads
        popts.inter_op_num_threads = 1
        popts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        popts.log_severity_level = 3
        tmp = tempfile.mkdtemp(prefix="edgekd-prof-")
        try:  # the folder goes whatever fails: opening the profiling session, a run, reading the trace
            popts.enable_profiling = True
            popts.profile_file_prefix = os.path.join(tmp, "ort")
            psession = ort.InferenceSession(path, sess_options=popts, providers=["CPUExecutionProvider"])
            psession.run(outputs, feed)  # the first run allocates; its events are dropped below
            for _ in range(runs):
                psession.run(outputs, feed)
            trace = psession.end_profiling()
            with open(trace) as f:
                events = json.load(f)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        # events come per run in order; each run's node events follow its "model_run" event
        starts = [e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
        first = starts[1] if len(starts) > 1 else 0
        # per node: its time in each run; ranked by the median over runs, so one preempted run (a busy machine)
        # cannot make a small layer look slow
        run_starts = sorted(s for s in starts if s >= first)
        per_node: dict[str, list[Any]] = {}
        for e in events:
            name = e.get("name", "")
            if e.get("cat") != "Node" or not name.endswith("_kernel_time") or e.get("ts", 0) < first:
                continue
            node = name[: -len("_kernel_time")]
            run_index = sum(1 for s in run_starts if s <= e.get("ts", 0)) - 1
            row = per_node.setdefault(node, [e.get("args", {}).get("op_name", "?"), {}])
            row[1][run_index] = row[1].get(run_index, 0.0) + float(e.get("dur", 0))
        stats = {}
        for node, (op, by_run) in per_node.items():
            values = [by_run.get(i, 0.0) for i in range(max(1, len(run_starts)))]
            stats[node] = (op, float(np.median(values)) / 1000.0, float(np.mean(values)) / 1000.0)
        whole = sum(v[1] for v in stats.values()) or 1.0
        ranked = sorted(stats.items(), key=lambda kv: -kv[1][1])[:k]
        return [
            {"name": n, "op_type": op, "median_ms": med, "avg_ms": mean, "share": med / whole}
            for n, (op, med, mean) in ranked
        ]

    return Loaded(
        run=lambda: session.run(outputs, feed),
        info={"runtime": "onnxruntime", "runtime_version": ort.__version__, "providers": session.get_providers()},
        per_layer=per_layer,
    )


# A 61-byte ONNX model (one Relu): creating a session from it pays onnxruntime's one-time set-up (environment,
# thread pools, kernel registry) so that the first model measured is not charged for it.
_ONNX_PRIMER = (
    b'\x08\x07:3\n\x0c\n\x01x\x12\x01y"\x04Relu\x12\x01pZ\x0f\n\x01x\x12\n\n\x08\x08\x01\x12\x04\n\x02\x08\x01'
    b"b\x0f\n\x01y\x12\n\n\x08\x08\x01\x12\x04\n\x02\x08\x01B\x04\n\x00\x10\r"
)


def prime_onnx(threads: int) -> None:
    """Run onnxruntime once on a trivial model; the session is dropped at once."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(_ONNX_PRIMER, sess_options=options, providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.zeros(1, dtype=np.float32)})


def _tflite_interpreter_module() -> Any:
    """ai-edge-litert's interpreter, else the older tflite-runtime package (common on Raspberry Pi OS)."""
    try:
        from ai_edge_litert import interpreter

        return interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter  # type: ignore[import-not-found]

        return interpreter
    except ImportError as exc:
        raise RunnerError(f"LiteRT is not installed ({exc}); pip install ai-edge-litert") from exc


#: LiteRT delegate for .tflite files: "xnnpack" (LiteRT's default CPU delegate) or "none" (built-in kernels only)
TFLITE_DELEGATE = {"value": "xnnpack"}


def load_tflite(path: str, threads: int, batch: int) -> Loaded:
    """A LiteRT interpreter over ``path`` (XNNPACK unless --tflite-delegate none) with random inputs in its dtypes."""
    mod = _tflite_interpreter_module()
    resolver = mod.OpResolverType.AUTO
    if TFLITE_DELEGATE["value"] == "none":
        resolver = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = mod.Interpreter(model_path=path, num_threads=threads or None, experimental_op_resolver_type=resolver)
    details = interp.get_input_details()
    for d in details:
        shape = [int(v) for v in d["shape"]]
        if shape and shape[0] != batch:
            if shape[0] != 1 or batch < 1:
                raise RunnerError(
                    f"{path}: input '{d['name']}' has a fixed batch of {shape[0]}; use --batch {shape[0]}"
                )
            interp.resize_tensor_input(d["index"], [batch, *shape[1:]], strict=False)
    interp.allocate_tensors()
    rng = np.random.default_rng(0)
    inputs = interp.get_input_details()
    if all(np.dtype(d["dtype"]).kind in "iu" and len(d["shape"]) == 2 for d in inputs):
        _token_feeds(path, interp, inputs, rng)
        inputs = []
    for d in inputs:
        dtype = np.dtype(d["dtype"])
        shape = tuple(int(v) for v in d["shape"])
        if dtype.kind == "f":
            interp.set_tensor(d["index"], rng.standard_normal(shape).astype(dtype))
        else:
            info = np.iinfo(dtype)
            interp.set_tensor(d["index"], rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype))
    version = getattr(sys.modules.get(mod.__name__.split(".")[0]), "__version__", "?")
    return Loaded(
        run=interp.invoke,
        info={"runtime": "litert", "runtime_version": str(version), "providers": [_tflite_kernels(interp)]},
        per_layer_unsupported=TFLITE_NO_PER_LAYER,
    )


def _token_feeds(path: str, interp: Any, inputs: list[dict[str, Any]], rng: np.random.Generator) -> None:
    """A text model's token inputs (converted from its arguments in packing order: input_ids, attention_mask,
    token_type_ids): ids 1-4, a full mask, segment 0, at the file's fixed sequence length."""

    def position(d: dict[str, Any]) -> int:
        m = re.search(r"args_(\d+)", d["name"])
        return int(m.group(1)) if m else int(d["index"])

    ordered = sorted(inputs, key=position)
    length = int(ordered[0]["shape"][1])
    if SEQUENCE["value"] is not None and int(SEQUENCE["value"]) != length:
        raise RunnerError(
            f"{path}: the file takes a fixed {length} tokens per sample, asked for --seq-len {SEQUENCE['value']}; "
            f"measure it at --seq-len {length}"
        )
    for i, d in enumerate(ordered):
        shape = tuple(int(v) for v in d["shape"])
        value = rng.integers(1, 5, size=shape) if i == 0 else np.ones(shape) if i == 1 else np.zeros(shape)
        interp.set_tensor(d["index"], value.astype(np.dtype(d["dtype"])))


#: why .tflite files get no per-layer profile (ai-edge-litert 2.x: the Python Interpreter and CompiledModel have no
#: profiler; LiteRT's op profiler is reachable only from its C/C++ API and its benchmark_model binary)
TFLITE_NO_PER_LAYER = (
    "per-layer profiling is not supported for LiteRT (.tflite) files: the LiteRT Python interpreter offers no op "
    "profiler (LiteRT's profiler is only in its C/C++ API and benchmark_model tool), so no layer was timed"
)


def _tflite_kernels(interp: Any) -> str:
    """What really runs the graph after ``allocate_tensors()``: ``xnnpack`` when the XNNPACK delegate took nodes
    (the graph then holds a DELEGATE node), else ``builtin``. XNNPACK declines, silently, the nodes it cannot run
    (e.g. a degenerate quantization scale), so asking for it does not mean it ran."""
    ops = getattr(interp, "_get_ops_details", None)
    if ops is None:  # an interpreter too old to list its nodes: say what was asked for, marked as such
        return f"{TFLITE_DELEGATE['value']} (requested)"
    return "xnnpack" if any(d.get("op_name") == "DELEGATE" for d in ops()) else "builtin"


# suffix -> loader(path, threads, batch)
RUNTIMES: dict[str, Callable[[str, int, int], Loaded]] = {".onnx": load_onnx, ".tflite": load_tflite}
# optional: suffix -> one-time runtime set-up run before any model is loaded
PRIMERS: dict[str, Callable[[int], None]] = {".onnx": prime_onnx}


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _hwm_bytes() -> int | None:
    """This process's own peak resident memory (VmHWM). Not ``getrusage().ru_maxrss``: on Linux that carries the
    parent's peak into a forked child, so a runner started by a 3 GB compile would report 3 GB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


#: untimed runs of a model each time the interleaved rounds switch to it (its caches were the previous model's)
REWARM = 3


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _progress(done: int, total: int) -> None:
    sys.stderr.write(json.dumps({"progress": done, "total": total}) + "\n")
    sys.stderr.flush()


def measure(
    paths: list[str],
    warmup: int,
    runs: int,
    rounds: int,
    threads: int,
    batch: int,
    per_layer: int = 0,
    clock: str = "wall",
) -> dict[str, Any]:
    """Load every model, then time them interleaved; return the JSON-ready result document.

    ``clock="thread"`` times each inference with the calling thread's CPU time instead of wall time: on a shared
    machine it leaves out the time the process waited, descheduled. Only for ``threads=1``, where the runtime
    computes in the calling thread."""
    if clock not in ("wall", "thread"):
        raise RunnerError(f"--clock {clock!r}: use wall or thread")
    if clock == "thread" and threads != 1:
        raise RunnerError("--clock thread measures the calling thread only: use it with --threads 1")
    now = time.perf_counter_ns if clock == "wall" else time.thread_time_ns
    for path in paths:
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in RUNTIMES:
            raise RunnerError(
                f"{path}: no runtime for '{suffix or '(none)'}' files; this runner knows {sorted(RUNTIMES)}"
            )
        if not os.path.isfile(path):
            raise RunnerError(f"{path}: no such file")
    np.random.default_rng(0)  # numpy loads np.random lazily (~7 MB, ~10 ms): not the first model's cost
    for suffix in sorted({os.path.splitext(p)[1].lower() for p in paths} & PRIMERS.keys()):
        try:
            PRIMERS[suffix](threads)
        except ImportError as exc:
            raise RunnerError(f"the runtime for '{suffix}' files is not installed: {exc}") from exc
    rounds = max(1, min(rounds, runs))
    per_round = _split(runs, rounds)
    total = len(paths) * (rounds + 1)
    done = 0
    loaded: list[Loaded] = []
    rss_delta: list[float | None] = []
    init_ms: list[float] = []
    load_before = _load_average()
    peak_mb: list[float | None] = []
    for path in paths:
        own_peak = _reset_hwm()
        before = _rss_bytes()
        start = time.perf_counter()
        try:
            model = RUNTIMES[os.path.splitext(path)[1].lower()](path, threads, batch)
        except RunnerError:
            raise
        except Exception as exc:
            raise RuntimeError(f"{path}: cannot load: {exc}") from exc
        init_ms.append((time.perf_counter() - start) * 1000.0)
        for _ in range(warmup):
            model.run()
        after = _rss_bytes()
        rss_delta.append(None if before is None or after is None else (after - before) / 2**20)
        hwm = _hwm_bytes() if own_peak else None
        peak_mb.append(None if hwm is None or before is None else (hwm - before) / 2**20)
        loaded.append(model)
        done += 1
        _progress(done, total)
    times: list[list[float]] = [[] for _ in paths]
    for n in per_round:
        for i, model in enumerate(loaded):
            before = _rss_bytes()
            for _ in range(min(warmup, REWARM) if len(loaded) > 1 else 0):
                model.run()
            gc.disable()
            try:
                for _ in range(n):
                    t0 = now()
                    model.run()
                    times[i].append((now() - t0) / 1e6)
            finally:
                gc.enable()
            after = _rss_bytes()
            delta = rss_delta[i]
            if delta is not None and before is not None and after is not None:
                rss_delta[i] = delta + (after - before) / 2**20
            done += 1
            _progress(done, total)
    hwm = _hwm_bytes()
    peak = None if hwm is None else hwm / 2**20  # the whole runner process (all models, the runtime)
    layers: list[Any] = [None] * len(paths)
    unsupported: list[str | None] = [None] * len(paths)
    if per_layer > 0:  # after all timing, so profiling never overlaps a timed run
        for i, model in enumerate(loaded):
            if model.per_layer is not None:
                layers[i] = model.per_layer(max(1, min(runs, 50)), per_layer)
            else:
                unsupported[i] = model.per_layer_unsupported or "this runtime gives no per-layer profile"
    results = []
    rows = zip(paths, loaded, times, init_ms, rss_delta, peak_mb, layers, unsupported)  # noqa: B905
    for path, model, t, init, rss, own, top, no_top in rows:
        a = np.asarray(t, dtype=np.float64)
        mean = float(a.mean())
        results.append(
            {
                "path": path,
                "p50_ms": float(np.percentile(a, 50)),
                "p90_ms": float(np.percentile(a, 90)),
                "p99_ms": float(np.percentile(a, 99)),
                "mean_ms": mean,
                "std_ms": float(a.std()),
                "min_ms": float(a.min()),
                "max_ms": float(a.max()),
                "throughput": batch * 1000.0 / mean if mean > 0 else float("inf"),
                "throughput_derived": True,  # batch / mean latency of sequential runs, not a concurrent-load test
                "p99_samples": int(np.ceil(0.01 * a.size)),  # timed runs at or above p99: 1 means p99 is one run
                "init_ms": init,
                "model_bytes": os.path.getsize(path),
                "rss_mb_delta": rss,
                "peak_rss_mb": own,  # this model's own peak while loading and warming up (VmHWM above the RSS before)
                "threads": threads,
                "batch": batch,
                "runs": int(a.size),
                "per_layer": top,
                **({"per_layer_unsupported": no_top} if no_top else {}),
                **model.info,
            }
        )
    return {
        "runner_version": RUNNER_VERSION,
        "host": {
            "machine": platform.machine(),
            "system": platform.system(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": _load_average(),
        },
        "config": {
            "warmup": warmup,
            "runs": runs,
            "rounds": rounds,
            "threads": threads,
            "batch": batch,
            "clock": clock,
        },
        "peak_rss_mb": peak,
        "models": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure inference latency of model files, interleaved.")
    parser.add_argument("models", nargs="+", help="model files (.onnx, .tflite)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs per model after loading")
    parser.add_argument("--runs", type=int, default=100, help="timed runs per model")
    parser.add_argument("--rounds", type=int, default=5, help="interleaving rounds the runs are split into")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: runtime default)")
    parser.add_argument("--batch", type=int, default=1, help="batch size of the random inputs")
    parser.add_argument(
        "--per-layer", type=int, default=0, metavar="K", help="also profile each model's K slowest layers (0: off)"
    )
    parser.add_argument(
        "--tflite-delegate", choices=("xnnpack", "none"), default="xnnpack", help="LiteRT delegate for .tflite files"
    )
    parser.add_argument(
        "--seq-len", type=int, default=None, help="tokens per sample for text models with a dynamic sequence length"
    )
    parser.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "thread"],
        help="thread: CPU time of the calling thread (--threads 1)",
    )
    args = parser.parse_args(argv)
    TFLITE_DELEGATE["value"] = args.tflite_delegate
    SEQUENCE["value"] = args.seq_len
    if args.runs < 1 or args.rounds < 1 or args.batch < 1 or args.warmup < 0 or args.threads < 0 or args.per_layer < 0:
        parser.error("--runs, --rounds and --batch must be >= 1; --warmup, --threads and --per-layer >= 0")
    try:
        doc = measure(
            list(args.models), args.warmup, args.runs, args.rounds, args.threads, args.batch, args.per_layer, args.clock
        )
    except RunnerError as exc:
        sys.stderr.write(f"runner.py: error: {exc}\n")
        return 2
    except Exception as exc:  # report any runtime failure as one line
        sys.stderr.write(f"runner.py: error: {type(exc).__name__}: {exc}\n")
        return 1
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
