"""TensorRT: a TensorRT-ready ONNX, the exact ``trtexec`` build command, and engines where TensorRT runs.

Where ``import tensorrt`` works and a CUDA GPU is present, :func:`build_engine` builds a serialized engine with
the Python API (fp16, int8 from the QDQ ONNX, optional 2:4 structured sparsity), saving the engine and its timing
cache, and :class:`TrtModel` runs it for parity and latency. Everywhere else (TensorRT is not installable from the
package registries: it ships with JetPack / NVIDIA's repositories), :func:`check_tensorrt_onnx` checks the ONNX
the device will build from, and :func:`trtexec_command` writes the command the device runs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnx
from pydantic import Field

from edgekd.backends.base import accuracy
from edgekd.backends.onnx.lower import check_onnx, embed_preprocessing
from edgekd.backends.parity import check_parity
from edgekd.backends.tensorrt.runtime import TrtModel, tensorrt_status
from edgekd.config.target import Precision
from edgekd.core.artifacts import atomic_write_bytes
from edgekd.core.errors import BackendUnavailable, ExportError
from edgekd.core.schema import Strict
from edgekd.document.model import Bullets, Section, Text
from edgekd.models.sparsity_2_4 import sparse_layers

if TYPE_CHECKING:
    from edgekd.pipeline.context import Context

PRECISIONS = ("fp32", "fp16", "int8")
# Operators the ONNX parser of TensorRT 8.x marks unsupported (onnx-tensorrt docs/operators.md), typical of graphs
# quantized for a CPU (QOperator, dynamic quantization) or exported from training code.
UNSUPPORTED_OPS = frozenset(
    {
        "BitShift", "Compress", "ConcatFromSequence", "ConvInteger", "Det", "DynamicQuantizeLinear",
        "MatMulInteger", "MaxRoiPool", "MaxUnpool", "Multinomial", "NegativeLogLikelihoodLoss", "QLinearConv",
        "QLinearMatMul", "RandomNormal", "RandomNormalLike", "SequenceAt", "SequenceConstruct", "SequenceEmpty",
        "SequenceErase", "SequenceInsert", "SequenceLength", "SoftmaxCrossEntropyLoss", "SplitToSequence",
        "StringNormalizer", "TfIdfVectorizer", "Unique",
    }
)  # fmt: skip
MAX_OPSET = 17  # TensorRT 8.5/8.6 (JetPack 5.1); TensorRT 10 parses up to opset 20: set runtime.options.max_opset


@dataclass
class OnnxCheck:
    """What was checked on the ONNX TensorRT will parse."""

    path: str
    opset: int
    nodes: int
    quantize_nodes: int
    dequantize_nodes: int
    checks: list[str] = field(default_factory=list)  # what passed, in words
    sanitized: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _layer_of(node: onnx.NodeProto) -> str:
    """The layer a node came from, from the exporter's node name (``/layer1/conv1/Conv`` -> ``layer1.conv1``)."""
    name = node.name or (node.output[0] if node.output else "?")
    parts = [p for p in name.split("/") if p]
    if len(parts) > 1:
        return ".".join(parts[:-1])
    return name.replace("_QuantizeLinear", "").replace("_DequantizeLinear", "")


def _initializer_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def check_tensorrt_onnx(path: str | os.PathLike[str], max_opset: int = MAX_OPSET) -> OnnxCheck:
    """Refuse what TensorRT's ONNX parser cannot build, naming the node, its layer and the options.

    Checks: ``onnx.checker`` (full), the opset, operators TensorRT lacks, and that every QuantizeLinear /
    DequantizeLinear is int8 with zero points of 0 (TensorRT's explicit quantization is symmetric int8).
    """
    p = Path(path)
    check_onnx(p, f"{p}: ONNX checker rejected the model", "re-export with another lower.opset in model.yaml")
    model = onnx.load(str(p))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    checks = ["onnx.checker (full_check)"]
    if opset > max_opset:
        raise ExportError(
            f"{p}: opset {opset} is newer than the {max_opset} the target's TensorRT parses",
            fix=f"set lower.opset: {max_opset} in model.yaml, or runtime.options.max_opset in the target file "
            "if the device has a newer TensorRT",
        )
    checks.append(f"opset {opset} <= {max_opset}")
    values = _initializer_values(model)
    q = dq = 0
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise ExportError(
                f"{p}: node '{node.name}' (layer '{_layer_of(node)}') is a custom '{node.domain}::{node.op_type}' "
                "operator, which TensorRT's ONNX parser cannot build without a plugin",
                fix="export without custom operators, use fp16 for this target, or pick another backend",
            )
        if node.op_type in UNSUPPORTED_OPS:
            raise ExportError(
                f"{p}: operator '{node.op_type}' (node '{node.name}', layer '{_layer_of(node)}') is not supported by "
                "TensorRT's ONNX parser",
                fix="quantize as QDQ (quantize pass, the default) instead of QOperator/dynamic quantization, "
                "replace the layer, use fp16 for this target (lower.tensorrt.precisions), or pick another backend "
                "(ONNX Runtime, TFLite)",
            )
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            q += node.op_type == "QuantizeLinear"
            dq += node.op_type == "DequantizeLinear"
            zp = values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if zp is not None and zp.dtype == np.int32:
                raise ExportError(
                    f"{p}: {node.op_type} node '{node.name}' (layer '{_layer_of(node)}') dequantizes an int32 "
                    "bias; TensorRT's ONNX parser builds int8 QuantizeLinear/DequantizeLinear only",
                    fix="set quantization.quantize_bias: false in the target file (TensorRT fuses float biases), "
                    "or build fp16 only (lower.tensorrt.precisions: [fp16])",
                )
            if zp is not None and (zp.dtype != np.int8 or np.any(zp != 0)):
                raise ExportError(
                    f"{p}: {node.op_type} node '{node.name}' (layer '{_layer_of(node)}') uses {zp.dtype} with zero "
                    f"point {zp.ravel()[:4].tolist()}; TensorRT builds only symmetric int8 QDQ (zero point 0)",
                    fix="set quantization.activation_type: int8 in the target file (symmetric calibration), "
                    "or build fp16 only (lower.tensorrt.precisions: [fp16])",
                )
    if q or dq:
        checks.append(f"{q} QuantizeLinear / {dq} DequantizeLinear, all symmetric int8")
    checks.append("no operator outside TensorRT's ONNX parser")
    return OnnxCheck(str(p), opset, len(model.graph.node), q, dq, checks)


def polygraphy_binary() -> str | None:
    """The ``polygraphy`` command of this environment (the ``trt`` extra), or None."""
    here = Path(sys.executable).with_name("polygraphy")
    if here.is_file():
        return str(here)
    return shutil.which("polygraphy")


def polygraphy_sanitize(src: Path, dst: Path, timeout: float = 600) -> list[str]:
    """``polygraphy surgeon sanitize --fold-constants`` then ``polygraphy run --onnxrt`` on the result; returns the
    commands run. Raises ExportError with polygraphy's own output when either fails."""
    binary = polygraphy_binary()
    if binary is None:
        raise BackendUnavailable("polygraphy is not installed", fix="pip install 'edgekd[trt]'")
    env = {**os.environ, "POLYGRAPHY_AUTOINSTALL_DEPS": "0"}
    ran = []
    for argv in (
        [binary, "surgeon", "sanitize", str(src), "--fold-constants", "-o", str(dst)],
        [binary, "run", str(dst), "--onnxrt", "--providers", "cpu"],
    ):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        ran.append(" ".join(shlex.quote(a if a != binary else "polygraphy") for a in argv))
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise ExportError(
                f"{ran[-1]} failed (exit {proc.returncode}):\n{tail}",
                fix="check the ONNX with `polygraphy inspect model`; try another lower.opset in model.yaml",
            )
    return ran


def trtexec_command(
    onnx_name: str,
    engine_name: str,
    precision: str,
    input_name: str,
    input_shape: tuple[int, ...],
    options: dict[str, Any] | None = None,
    dynamic_batch: bool = False,
    max_batch: int = 8,
    sparsity: bool = False,
    timing_cache: str = "timing.cache",
    runs: int = 500,
) -> list[str]:
    """The ``trtexec`` command that builds, saves and times the engine on the device (paths relative to the run
    folder copied there).

    int8 reads the QDQ scales (explicit quantization) and adds ``--fp16`` for layers without int8 kernels;
    dynamic-batch models get min/opt/max shapes (opt = the input's batch); timing: ``--iterations=runs`` with
    ``--duration=0`` and ``--warmUp`` milliseconds (``runtime.options.warmup_ms``), spin-wait for stable figures.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    opts = options or {}
    argv = [str(opts.get("trtexec", "trtexec")), f"--onnx={onnx_name}", f"--saveEngine={engine_name}"]
    if precision == "int8":
        argv += ["--int8", "--fp16"]
    elif precision == "fp16":
        argv += ["--fp16"]
    else:
        argv += ["--noTF32"]  # an fp32 engine computes in fp32, not TF32 on the tensor cores
    if dynamic_batch:
        dims = "x".join(str(d) for d in input_shape[1:])
        batch = input_shape[0]
        argv += [
            f"--minShapes={input_name}:1x{dims}",
            f"--optShapes={input_name}:{batch}x{dims}",
            f"--maxShapes={input_name}:{max(batch, max_batch)}x{dims}",
        ]
    if sparsity:
        argv += ["--sparsity=enable"]
    if "workspace_mb" in opts:
        argv += [f"--memPoolSize=workspace:{int(opts['workspace_mb'])}M"]
    argv += [f"--timingCacheFile={timing_cache}"]
    argv += [f"--iterations={runs}", "--duration=0", f"--warmUp={int(opts.get('warmup_ms', 200))}", "--useSpinWait"]
    argv += [str(f) for f in opts.get("trtexec_flags", [])]
    return argv


def build_script(commands: dict[str, list[str]], note: str) -> bytes:
    """A POSIX shell script running each build command (run it in the run folder copied to the device)."""
    lines = [
        "#!/bin/sh",
        "# Build and time the TensorRT engines on the device, in a copy of this run folder.",
        f"# {note}",
    ]
    lines += ["set -e", 'cd "$(dirname "$0")"']
    for name, argv in commands.items():
        lines += [f"# {name}", " ".join(shlex.quote(a) for a in argv)]
    return ("\n".join(lines) + "\n").encode()


# --------------------------------------------------------------------------- where TensorRT runs


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    precision: str,
    timing_cache: Path,
    workspace_mb: int = 1024,
    sparsity: bool = False,
    dynamic_batch: bool = False,
    max_batch: int = 8,
) -> dict[str, Any]:
    """Build a serialized engine with TensorRT's Python API; writes the engine and the timing cache atomically."""
    ok, why = tensorrt_status()
    if not ok:
        raise BackendUnavailable(f"cannot build a TensorRT engine here: {why}", fix="build on the device (trtexec)")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT 8 needs it; 10 always is
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(
            f"TensorRT cannot parse {onnx_path}: " + "; ".join(errors[:3]),
            fix="use fp16 for this target, another lower.opset, or replace the layer named above",
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if sparsity:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    if dynamic_batch:
        inp = network.get_input(0)
        dims = tuple(inp.shape)[1:]
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, (1, *dims), (1, *dims), (max_batch, *dims))
        config.add_optimization_profile(profile)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path}", fix="see TensorRT's log above")
    atomic_write_bytes(engine_path, bytes(serialized))
    atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    return {"tensorrt": trt.__version__, "build_s": time.perf_counter() - start, "sparsity": sparsity}


class TensorrtConfig(Strict):
    precisions: list[Precision] | None = Field(default=None, description="default: the target's precisions")
    sparsity: bool = Field(default=False, description="2:4 structured sparsity (--sparsity=enable / SPARSE_WEIGHTS)")
    build: Literal["auto", "never"] = Field(
        default="auto", description="auto: build engines where TensorRT imports and a GPU exists"
    )
    max_batch: int = Field(default=8, ge=1, description="largest batch of the optimisation profile (dynamic batch)")
    sanitize: bool = Field(default=True, description="polygraphy surgeon sanitize + run --onnxrt, when installed")


def lower(ctx: Context, c: Any, summary: dict[str, Any]) -> None:
    """The TensorRT-ready QDQ ONNX, ``build_engines.sh`` and, where TensorRT and a GPU exist, the engines."""
    summary["tensorrt"] = _prepare(ctx, c)


def _prepare(ctx: Context, c: Any) -> dict[str, Any]:
    t = c.tensorrt
    opts = ctx.target.runtime.options
    max_opset = int(opts.get("max_opset", MAX_OPSET))
    precisions = list(dict.fromkeys(t.precisions or [p for p in ctx.target.precisions]))
    example = tuple(ctx.data.test.x[:1].shape)
    built, why_not = tensorrt_status()
    build_here = built and t.build == "auto"
    sources: dict[str, str] = {}
    sparsity = t.sparsity
    sparse = sorted(sparse_layers(ctx.student)) if sparsity and ctx.student is not None else []
    if sparsity and not sparse:  # checked in the weights: the flag only where a layer is really 2:4
        sparsity = False
        ctx.note(
            "lower.tensorrt.sparsity: no layer of the student has 2:4 sparse weights (run prune with "
            "sparsity_2_4: true before lower), so --sparsity=enable was not emitted"
        )
    out: dict[str, Any] = {
        "precisions": precisions, "sparsity": sparsity, "sparse_layers": sparse, "checks": {}, "commands": {},
    }  # fmt: skip
    for precision in precisions:
        if precision == "int8":
            if "onnx_int8" not in ctx.artifacts:
                ctx.note(
                    "tensorrt int8: no QDQ ONNX to build from (add a quantize pass with precision int8 before "
                    "lower); only the other precisions were prepared"
                )
                continue
            src = ctx.path_of("onnx_int8")
            check_tensorrt_onnx(src, max_opset)  # names the node/layer TensorRT would refuse
            name = "student.int8.trt.onnx"
            dst = ctx.run_dir / name
            if t.sanitize and polygraphy_binary() is not None:
                out["polygraphy"] = polygraphy_sanitize(src, dst)
            else:
                atomic_write_bytes(dst, src.read_bytes())
                ctx.note(
                    "tensorrt: polygraphy is not installed, so the QDQ ONNX was not sanitized or run through "
                    "polygraphy (pip install 'edgekd[trt]'); onnx.checker and edgekd's TensorRT checks passed"
                )
            embed_preprocessing(dst, ctx.data.preprocessing)
            art = ctx.add_artifact("onnx_int8_trt", dst, "onnx", precision="int8", backend="tensorrt")
            art.info["tensorrt_ready"] = True
        else:
            name = ctx.artifacts["onnx"].path
        check = check_tensorrt_onnx(ctx.run_dir / name, max_opset)
        out["checks"][precision] = check.to_dict() | {"path": name}
        sources[precision] = name
    commands = {
        p: trtexec_command(
            src,
            f"student.{p}.engine",
            p,
            "input",
            example,
            opts,
            dynamic_batch=c.dynamic_batch,
            max_batch=t.max_batch,
            sparsity=sparsity,
            runs=ctx.target.profile.runs,
        )
        for p, src in sources.items()
    }
    out["commands"] = {p: " ".join(a) for p, a in commands.items()}
    note = f"engines built here with TensorRT {why_not}" if build_here else f"engines NOT built here: {why_not}"
    with ctx.artifact("trtexec", "build_engines.sh", "text", precision="fp32", backend="tensorrt") as tmp:
        tmp.write_bytes(build_script(commands, note))
        tmp.chmod(0o755)
    out["engine_built"] = build_here
    if not build_here:
        out["why_not_built"] = why_not if t.build == "auto" else "lower.tensorrt.build is 'never'"
        ctx.note(
            f"TensorRT engine for {ctx.target.name} not built on this machine ({out['why_not_built']}). The "
            "TensorRT-ready ONNX and "
            "build_engines.sh (the exact trtexec commands) are in the run folder; the device profiler runs "
            "trtexec on the device"
        )
        return out
    cache = ctx.run_dir / "timing.cache"
    for precision, src in sources.items():
        engine = ctx.run_dir / f"student.{precision}.engine"
        info = build_engine(
            ctx.run_dir / src,
            engine,
            precision,
            cache,
            workspace_mb=int(opts.get("workspace_mb", 1024)),
            sparsity=sparsity,
            dynamic_batch=c.dynamic_batch,
            max_batch=t.max_batch,
        )
        art = ctx.add_artifact(f"engine_{precision}", engine, "engine", precision=precision, backend="tensorrt")
        ctx.add_preprocessing_sidecar(art.name)
        model = TrtModel(engine)
        held_out = ctx.data.test.x[: c.parity.samples]
        report = check_parity(
            ctx.student,
            engine,
            held_out,
            mode="exact" if precision == "fp32" else "quantized",
            **c.parity.for_artifact(engine.name, precision),
            predictor=model,
        )
        art.info.update(build=info, parity=report.to_dict())
        report.raise_if_failed()
        art.info["accuracy"] = accuracy(model, ctx.data.test.x, ctx.data.test.y)
        times = sorted(model.latency_ms(ctx.data.test.x[:1].numpy(), runs=ctx.target.profile.runs))
        art.info["engine_latency"] = {"p50_ms": times[len(times) // 2], "where": "this machine's GPU (CUDA events)"}
    ctx.add_artifact("timing_cache", cache, "cache", precision="fp32", backend="tensorrt")
    return out


def report_sections(low: dict[str, Any]) -> list[Section]:
    """The report's TensorRT section (the build commands the device runs), from result.json."""
    out: list[Section] = []
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
