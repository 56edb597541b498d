"""Convert a PyTorch model to LiteRT (TFLite) flatbuffers: fp32, fp16 weights, and full-integer INT8.

* fp32: ``litert_torch.convert`` of the model in eval mode.
* fp16: the fp32 file with its weights cast to float16 by ``ai-edge-quantizer`` (``FLOAT_CASTING``, the classic
  TFLite "float16 quantization": half the size; kernels dequantize the weights and compute in fp32 unless the
  runtime has fp16 arithmetic).
* int8: full-integer (int8 weights, activations, input and output). ``pt2e``: the model is exported, observed on
  the calibration samples with litert-torch's PT2E quantizer (symmetric int8 weights, per-channel or per-tensor)
  and converted with ``QuantConfig(pt2e_quantizer=...)``; ``ai-edge-quantizer``: ``static_wi8_ai8`` applied to
  the fp32 file with the calibration samples.

Text models (packed token inputs): ``litert_torch.convert`` of the model taking its token inputs as separate
int64 arguments at a fixed sequence length (LiteRT files have static shapes; the converter narrows them to int32);
their INT8 is ai-edge-quantizer's ``dynamic_wi8_afp32`` (int8 weights, activations quantized at run time), the
LiteRT counterpart of ONNX Runtime's dynamic quantization that BERT-class models use on CPUs.

Input/output layout: ``nhwc`` wraps the model with ``litert_torch.to_channel_last_io`` (what mobile image
pipelines feed); ``nchw`` keeps PyTorch's layout. The converters are imported only when used, so the core
package works without the ``tflite`` extra.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from edgekd.backends.base import QuantScheme
from edgekd.config.target import Precision, TargetConfig
from edgekd.core.artifacts import atomic_writer
from edgekd.core.errors import BackendUnavailable, ExportError
from edgekd.core.library_output import library_lines, library_output_captured
from edgekd.core.optional import require
from edgekd.core.schema import Strict
from edgekd.document.model import Section, Text

if TYPE_CHECKING:
    from edgekd.pipeline.context import Context

PRECISIONS = ("fp32", "fp16", "int8")
INT8_METHODS = ("pt2e", "ai-edge-quantizer")
LAYOUTS = ("nhwc", "nchw")
PIP = "pip install 'edgekd[tflite]'  (litert-torch, ai-edge-litert, ai-edge-quantizer)"


def import_litert_torch() -> Any:
    """``litert_torch``, or a BackendUnavailable naming the extra to install."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    return require(
        "litert_torch", "the target asks for TFLite (LiteRT) artifacts, but litert-torch is not installed", PIP
    )


def import_quantizer() -> Any:
    return require("ai_edge_quantizer.quantizer", "ai-edge-quantizer is not installed", PIP)


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Send this process's stdout and stderr (file descriptors included: the converters log from C++) to a
    temporary file, warnings off; the yielded list receives the captured lines when the block ends."""
    lines: list[str] = []
    captured: list[Path] = []
    try:
        with library_output_captured() as path, warnings.catch_warnings():
            captured.append(path)
            warnings.simplefilter("ignore")
            yield lines
    finally:  # read once the descriptors are back and flushed, also when the block failed
        for path in captured:
            lines.extend(library_lines(path))
            path.unlink(missing_ok=True)


class _ChannelsFirst(nn.Module):
    """Identity wrapper: gives ``to_channel_last_io`` a fresh module so the user's model is never modified."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _prepared(model: nn.Module, example: torch.Tensor, layout: str) -> tuple[nn.Module, torch.Tensor]:
    """The module to convert and its example input in the file's layout."""
    litert_torch = import_litert_torch()
    model = model.eval()
    if layout == "nchw" or example.dim() != 4:
        return model, example
    with torch.no_grad():
        out = model(example)
    outputs = [0] if out.dim() == 4 else []  # logits stay (N, K); feature maps go channel-last too
    wrapped = litert_torch.to_channel_last_io(_ChannelsFirst(model), args=[0], outputs=outputs).eval()
    return wrapped, example.permute(0, 2, 3, 1).contiguous()


# litert-torch / torch.export messages naming an operator with no lowering
_UNSUPPORTED = (
    re.compile(r"[Ll]owering (?:not found|is not implemented)(?: for)?:?\s*'?(?:<OpOverload\(op=')?([\w:.]+)"),
    re.compile(r"No lowering (?:found )?for[^\w]*([\w:.]+)"),
    re.compile(r"(aten[.:][\w.]+)[^\n]*(?:not supported|unsupported|failed to legalize)"),
    re.compile(r"failed to legalize operation '([\w.]+)'"),
)


def unsupported_operator(message: str) -> str | None:
    """The operator a conversion error says has no LiteRT lowering (``aten.kthvalue``), or None."""
    for pattern in _UNSUPPORTED:
        if match := pattern.search(message):
            op = match.group(1).rstrip(".")
            return op[: -len(".default")] if op.endswith(".default") else op
    return None


def _conversion_error(
    exc: BaseException, model: nn.Module, example: torch.Tensor, path: Path, what: str, log: list[str]
) -> ExportError:
    from edgekd.backends.onnx.lower import called_in, layer_calling

    message = " ".join(str(exc).split())
    op = unsupported_operator(message) or unsupported_operator("\n".join(log[-50:]))
    if op is not None:
        layer = layer_calling(model, example, op.replace(".", "::", 1) if op.startswith("aten.") else op)
        where = called_in(layer, type(model).__name__)
        return ExportError(
            f"cannot convert {type(model).__name__} to {path} ({what}): operator '{op}'{where} has no LiteRT lowering",
            fix=f"replace the layer that calls '{op}' with LiteRT-supported ops, keep this precision off "
            "(lower.tflite.precisions in model.yaml), or pick a target with another backend (ONNX Runtime, TensorRT)",
        )
    if len(message) > 800:
        message = message[:800] + " ..."
    return ExportError(
        f"cannot convert {type(model).__name__} to {path} ({what}): {type(exc).__name__}: {message or '(no message)'}",
        fix="check that the model runs on the example input and exports with torch.export; try "
        "lower.tflite.int8_method: ai-edge-quantizer (or pt2e), or a target with another backend",
    )


def _calibration_batches(calibration: np.ndarray | torch.Tensor, layout: str, batch: int) -> list[torch.Tensor]:
    x = torch.as_tensor(np.asarray(calibration, dtype=np.float32))
    if len(x) < batch:
        raise ExportError(
            f"{len(x)} calibration samples for an INT8 TFLite model of batch {batch}",
            fix="set calibration.samples (model.yaml) to at least the batch size, a few hundred for good ranges",
        )
    if layout == "nhwc" and x.dim() == 4:
        x = x.permute(0, 2, 3, 1).contiguous()
    return [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)]


def convert_tflite(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike[str],
    precision: str = "fp32",
    layout: str = "nhwc",
    calibration: np.ndarray | torch.Tensor | None = None,
    int8_method: str = "pt2e",
    per_channel: bool = True,
) -> Path:
    """Write ``model`` as a ``.tflite`` file at ``path`` (atomically) and return the path.

    ``example``: an NCHW input fixing the input shape, batch included (1 for the lower pass). ``calibration``:
    NCHW float samples, needed for ``int8``, fed in batches of the example's size.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if int8_method not in INT8_METHODS:
        raise ValueError(f"int8_method must be one of {INT8_METHODS}, got {int8_method!r}")
    if precision == "int8" and calibration is None:
        raise ExportError(f"INT8 TFLite {path} needs calibration samples", fix="give calibration: in model.yaml")
    out = Path(path)
    was_training = model.training
    example = example.detach().float()
    try:
        with atomic_writer(out) as tmp:
            if precision == "int8" and int8_method == "pt2e":
                assert calibration is not None
                _int8_pt2e(model, example, tmp, layout, calibration, per_channel, out)
            else:
                with tempfile.TemporaryDirectory(prefix="edgekd-tflite-") as work:
                    fp32 = Path(work) / "fp32.tflite"
                    _fp32(model, example, fp32, layout, out)
                    if precision == "fp32":
                        shutil.copyfile(fp32, tmp)
                    elif precision == "fp16":
                        _fp16(fp32, tmp)
                    else:
                        assert calibration is not None
                        _int8_aeq(fp32, tmp, calibration, layout, len(example))
    finally:
        model.train(was_training)
    return out


def convert_text_tflite(model: nn.Module, length: int, path: str | os.PathLike[str], precision: str = "fp32") -> Path:
    """Write a text model (:class:`edgekd.models.text.TokenClassifier`) as a ``.tflite`` file taking ``length``
    tokens per input, batch 1; ``int8`` is dynamic-range (int8 weights, run-time activation ranges)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    litert_torch = import_litert_torch()
    out = Path(path)
    names = model.inputs  # type: ignore[attr-defined]
    ones, zeros = torch.ones(1, length, dtype=torch.long), torch.zeros(1, length, dtype=torch.long)
    # the example is padded: a full mask lets transformers drop the mask at trace time (its all-ones shortcut),
    # and the file would then attend to padding
    padded = ones.clone()
    padded[:, max(1, length // 2) :] = 0
    args = tuple(zeros if n == "token_type_ids" else padded if n == "attention_mask" else ones for n in names)
    packed = torch.stack(args, 1)
    was_training = model.training
    named = model.named_inputs().eval()  # type: ignore[operator]
    try:
        with atomic_writer(out) as tmp, tempfile.TemporaryDirectory(prefix="edgekd-tflite-") as work:
            fp32 = Path(work) / "fp32.tflite"
            log: list[str] = []
            try:
                with captured_output() as log, torch.no_grad():
                    litert_torch.convert(named, args).export(str(fp32))
            except Exception as exc:
                raise _conversion_error(exc, model.eval(), packed, out, "fp32", log) from exc
            if precision == "fp32":
                shutil.copyfile(fp32, tmp)
            elif precision == "fp16":
                _fp16(fp32, tmp)
            else:
                _int8_dynamic(fp32, tmp)
    finally:
        model.train(was_training)
    return out


def _int8_dynamic(fp32: Path, dst: Path) -> None:
    import_quantizer()  # a clear BackendUnavailable when the extra is missing
    from ai_edge_quantizer import recipe

    _quantize_file(
        fp32, dst, lambda q: q.load_quantization_recipe(recipe.dynamic_wi8_afp32()), "dynamic_wi8_afp32 failed on",
        "leave int8 out of lower.tflite.precisions in model.yaml (the ONNX INT8 file is still written)",
    )  # fmt: skip


def _quantize_file(fp32: Path, dst: Path, configure: Any, what: str, fix: str) -> None:
    """``ai-edge-quantizer`` over the fp32 file, configured by ``configure(quantizer)``, written to ``dst``; a
    failure is an ExportError ``ai-edge-quantizer <what> <file>: <cause>`` with ``fix``."""
    quantizer = import_quantizer()
    try:
        with captured_output():
            q = quantizer.Quantizer(str(fp32))
            configure(q)
            q.quantize().export_model(str(dst), overwrite=True)
    except Exception as exc:
        raise ExportError(f"ai-edge-quantizer {what} {fp32.name}: {type(exc).__name__}: {exc}", fix=fix) from exc


def _fp32(model: nn.Module, example: torch.Tensor, dst: Path, layout: str, shown: Path) -> None:
    litert_torch = import_litert_torch()
    module, x = _prepared(model, example, layout)
    log: list[str] = []
    try:
        with captured_output() as log, torch.no_grad():
            litert_torch.convert(module, (x,)).export(str(dst))
    except Exception as exc:
        raise _conversion_error(exc, model, example, shown, "fp32", log) from exc


def _fp16(fp32: Path, dst: Path) -> None:
    import_quantizer()
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    def configure(q: Any) -> None:
        q.add_weight_only_config(
            regex=".*",
            operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            num_bits=16,
            algorithm_key=AlgorithmName.FLOAT_CASTING,
        )

    _quantize_file(fp32, dst, configure, "could not cast to fp16 the weights of",
                   "leave fp16 out of lower.tflite.precisions in model.yaml")  # fmt: skip


def _int8_pt2e(
    model: nn.Module,
    example: torch.Tensor,
    dst: Path,
    layout: str,
    calibration: Any,
    per_channel: bool,
    shown: Path,
) -> None:
    litert_torch = import_litert_torch()
    from litert_torch.quantize import pt2e_quantizer as pq
    from litert_torch.quantize.quant_config import QuantConfig

    try:
        from torchao.quantization.pt2e import move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as exc:
        raise BackendUnavailable(f"torchao (PT2E quantization) is not installed ({exc})", fix=PIP) from exc
    module, x = _prepared(model, example, layout)
    batches = _calibration_batches(calibration, layout, len(example))
    quantizer = pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=per_channel))
    log: list[str] = []
    try:
        with captured_output() as log, torch.no_grad():
            exported = torch.export.export(module, (x,)).module()
            prepared = prepare_pt2e(exported, quantizer)
            for batch in batches:
                prepared(batch)
            converted = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
            litert_torch.convert(converted, (x,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(dst))
    except Exception as exc:
        raise _conversion_error(exc, model, example, shown, "int8, PT2E", log) from exc


def _int8_aeq(fp32: Path, dst: Path, calibration: Any, layout: str, batch: int) -> None:
    quantizer = import_quantizer()
    from ai_edge_quantizer import recipe

    from edgekd.backends.tflite.runtime import signature_io

    signature, (input_name,) = signature_io(fp32)
    batches = _calibration_batches(calibration, layout, batch)
    try:
        with captured_output():
            q = quantizer.Quantizer(str(fp32))
            q.load_quantization_recipe(recipe.static_wi8_ai8())
            stats = q.calibrate({signature: [{input_name: b.numpy()} for b in batches]})
            q.quantize(stats).export_model(str(dst), overwrite=True)
    except Exception as exc:
        raise ExportError(
            f"ai-edge-quantizer static_wi8_ai8 failed on {fp32.name}: {type(exc).__name__}: {exc}",
            fix="try lower.tflite.int8_method: pt2e in model.yaml",
        ) from exc


class TfliteConfig(Strict):
    precisions: list[Precision] | None = Field(
        default=None, description="default: fp32 plus the target's fp16/int8 precisions"
    )
    io_layout: Literal["nhwc", "nchw"] | None = Field(
        default=None, description="default: the target's runtime.options.io_layout, else nhwc"
    )
    int8_method: Literal["pt2e", "ai-edge-quantizer"] = "pt2e"
    per_channel: bool | None = Field(default=None, description="int8 weights per channel; default: the target's")
    delegate: Literal["xnnpack", "none"] | None = Field(
        default=None, description="default: the target's runtime.options.delegate, else xnnpack"
    )


def pt2e_scheme(quantization: Any, method: str) -> QuantScheme:
    """What :func:`convert_tflite` writes at INT8 (litert-torch's PT2E quantizer): int8 activations with a zero
    point on [-128, 127], symmetric int8 weights, int32 biases (TFLite's kernels always take them)."""
    return QuantScheme(
        runtime="LiteRT (PT2E)",
        act_qmin=-128,
        act_qmax=127,
        act_symmetric=False,
        per_channel=quantization.per_channel,
        bias_int32=True,
        calibration="histogram",
        range_finder="edgekd.backends.tflite.lower:pt2e_ranges",
        pools_share_input_range=True,
    )


def pt2e_ranges(recorded: dict[str, list[np.ndarray]], _method: str) -> dict[str, tuple[float, float]]:
    """The activation ranges PT2E's calibration finds (its HistogramObserver, fed one sample at a time as
    :func:`convert_tflite` feeds it) for tensors whose per-sample values are ``recorded``."""
    from torchao.quantization.pt2e.observer import HistogramObserver

    out = {}
    for name, samples in recorded.items():
        obs = HistogramObserver(dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine,
                                eps=2**-12)  # fmt: skip
        for sample in samples:
            obs(torch.from_numpy(sample[None]))
        scale, zero = obs.calculate_qparams()
        s, z = float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0])
        out[name] = ((-128 - z) * s, (127 - z) * s)
    return out


def tflite_precisions(c: Any, target: TargetConfig) -> list[str]:
    if c.tflite.precisions is not None:
        return list(dict.fromkeys(c.tflite.precisions))
    return ["fp32"] + [p for p in ("fp16", "int8") if p in target.precisions]


def tflite_delegate(c: Any, target: TargetConfig) -> str:
    return c.tflite.delegate or str(target.runtime.options.get("delegate", "xnnpack"))


def int8_activations(graph: dict[str, Any]) -> str:
    """What an INT8 ``.tflite`` really holds, read from its graph (:func:`op_summary`): full-integer only when no
    operator computes in float; otherwise the float operators are named."""
    io = f"{graph['input_type'].lower()} input, {graph['output_type'].lower()} output"
    floats = graph["float_operators"]
    if not floats:
        return f"int8 (full-integer: {io})"
    named = ", ".join(f"{op} x{n}" for op, n in floats.items())
    return f"int8 with float operators left ({named}; {io})"


def check_available(c: Any, target: TargetConfig) -> None:
    """Before anything runs: the TFLite converter and interpreter (and the quantizer when needed) import here."""
    from edgekd.backends.tflite.runtime import import_interpreter

    import_litert_torch()
    import_interpreter()
    if set(tflite_precisions(c, target)) & {"fp16"} or c.tflite.int8_method == "ai-edge-quantizer":
        import_quantizer()


def lower(ctx: Context, c: Any, summary: dict[str, Any]) -> None:
    """``student.<precision>.tflite`` for every TFLite precision of the target (``c`` is the LowerConfig); a text
    student at data.max_length tokens, batch 1."""
    assert ctx.student is not None
    student = ctx.student
    precisions = tflite_precisions(c, ctx.target)
    delegate = tflite_delegate(c, ctx.target)
    if ctx.data.is_text:
        length = int(ctx.data.input_shape[-1])

        def convert(precision: str, path: Path) -> Path:
            return convert_text_tflite(student, length, path, precision)

        def int8_info(_graph: dict[str, Any]) -> dict[str, Any]:
            return {
                "method": "ai-edge-quantizer dynamic_wi8_afp32",
                "weights": "int8 symmetric, per-channel",
                "activations": "float, quantized at run time (dynamic range)",
                "integer_only": False,
            }

        _write_files(ctx, precisions, convert, int8_info, {"sequence_length": length})
        summary["tflite"] = {
            "precisions": precisions,
            "io_layout": "tokens",
            "int8_method": "ai-edge-quantizer dynamic",
            "per_channel": True,
            "delegate": delegate,
            "sequence_length": length,
        }
        return
    layout = c.tflite.io_layout or str(ctx.target.runtime.options.get("io_layout", "nhwc"))
    per_channel = ctx.target.quantization.per_channel if c.tflite.per_channel is None else c.tflite.per_channel
    calib = ctx.data.calibration.x
    example = ctx.data.test.x[:1]

    def convert_image(precision: str, path: Path) -> Path:
        return convert_tflite(
            student, example, path, precision=precision, layout=layout,
            calibration=calib if precision == "int8" else None, int8_method=c.tflite.int8_method,
            per_channel=per_channel,
        )  # fmt: skip

    def image_int8_info(graph: dict[str, Any]) -> dict[str, Any]:
        return {
            "method": c.tflite.int8_method,
            "weights": "int8 symmetric, " + ("per-channel" if per_channel else "per-tensor"),
            "activations": int8_activations(graph),
            "integer_only": not graph["float_operators"],
            "calibration_samples": len(calib),
        }

    _write_files(ctx, precisions, convert_image, image_int8_info, {"io_layout": layout})
    summary["tflite"] = {
        "precisions": precisions,
        "io_layout": layout,
        "int8_method": c.tflite.int8_method,
        "per_channel": per_channel,
        "delegate": delegate,
    }


def _write_files(ctx: Context, precisions: list[str], convert: Any, int8_info: Any, info: dict[str, Any]) -> None:
    """Convert (``convert(precision, path)``, written atomically) and register one artifact per precision, with
    its preprocessing sidecar, graph summary and quantization record."""
    from edgekd.backends.tflite.runtime import op_summary

    bar = ctx.progress("lower tflite")
    bar.start(f"{len(precisions)} TFLite files", len(precisions))
    for precision in precisions:
        path = convert(precision, ctx.run_dir / f"student.{precision}.tflite")
        art = ctx.add_artifact(f"tflite_{precision}", path, "tflite", precision=precision, backend="tflite")
        ctx.add_preprocessing_sidecar(art.name)
        art.info.update(info)
        art.info["graph"] = op_summary(path)
        if precision == "int8":
            art.info["quantization"] = int8_info(art.info["graph"])
        elif precision == "fp16":
            art.info["quantization"] = {"method": "ai-edge-quantizer float casting", "weights": "float16"}
        bar.advance(1)
    bar.finish()


def report_sections(low: dict[str, Any]) -> list[Section]:
    """The report's TFLite section, from the lower pass's summary in result.json."""
    out: list[Section] = []
    tfl = low.get("tflite")
    if tfl and tfl.get("io_layout") == "tokens":
        out.append(
            Section(
                "TFLite",
                [
                    Text(
                        f"{', '.join(tfl['precisions'])}; int32 token inputs at {tfl['sequence_length']} tokens, "
                        "batch 1 (pad or truncate to it); INT8 is dynamic range (int8 weights, activations "
                        f"quantized at run time); run in LiteRT with delegate {tfl['delegate']}."
                    )
                ],
            )
        )
    elif tfl:
        out.append(
            Section(
                "TFLite",
                [
                    Text(
                        f"{', '.join(tfl['precisions'])}; {tfl['io_layout'].upper()} input/output; INT8 by "
                        f"{tfl['int8_method']} ({'per-channel' if tfl['per_channel'] else 'per-tensor'} weights, "
                        f"int8 I/O); run in LiteRT with delegate {tfl['delegate']}."
                    )
                ],
            )
        )
    return out
