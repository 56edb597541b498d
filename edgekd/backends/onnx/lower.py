"""Export a PyTorch model to a single, checked ONNX file.

Opset <= 17 uses the legacy TorchScript exporter (fast, mature); a higher opset
uses the torch.export-based exporter with the weights kept inside the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
import torch
from torch import nn

from edgekd.backends.onnx.simplify import simplify_onnx
from edgekd.core.artifacts import atomic_writer
from edgekd.core.errors import ExportError
from edgekd.data.preprocessing import METADATA_KEY
from edgekd.models.text import TokenClassifier, token_inputs

if TYPE_CHECKING:
    from edgekd.pipeline.context import Context

LEGACY_MAX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# legacy: "Exporting the operator 'aten::kthvalue' to ONNX opset version 17 is not supported"
_LEGACY_UNSUPPORTED = re.compile(r"operator '([\w:.]+)' to ONNX opset version (\d+) is not supported")
# dynamo: "No ONNX function found for <OpOverload(op='aten._linalg_eigh', overload='default')>"
_DYNAMO_UNSUPPORTED = re.compile(r"No ONNX function found for <OpOverload\(op='([\w:.]+)'")


def unsupported_operator(message: str) -> str | None:
    """The operator an exporter error message says has no ONNX translation, or None."""
    message = _ANSI.sub("", message)
    for pattern in (_LEGACY_UNSUPPORTED, _DYNAMO_UNSUPPORTED):
        if match := pattern.search(message):
            return match.group(1)
    return None


def layer_calling(model: nn.Module, example: torch.Tensor, op: str) -> str | None:
    """The module path (e.g. ``layer2.0.pool``) whose forward calls ``op`` (``aten::kthvalue``), found by
    running the model once; ``""`` for the model's own forward; None if it is never called."""
    name = op.split("::")[-1].split(".")[0].lstrip("_")
    stack: list[str] = []
    found: list[str] = []

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "").lstrip("_") == name and not found:
                found.append(stack[-1] if stack else "")
            return func(*args, **(kwargs or {}))

    def leave(_m: nn.Module, _i: object, _o: object) -> None:  # must return None: a value would replace the output
        stack.pop()

    hooks = []
    for path, module in model.named_modules():
        if path:
            hooks.append(module.register_forward_pre_hook(lambda _m, _i, p=path: stack.append(p)))
            hooks.append(module.register_forward_hook(leave))
    try:
        with torch.no_grad(), Spy():
            model(example)
    except Exception:
        return None
    finally:
        for h in hooks:
            h.remove()
    return found[0] if found else None


def called_in(layer: str | None, model_name: str) -> str:
    """Where an operator is called, for an error message: `` (called in layer 'x')``, `` (called in
    Model.forward)`` for the top module (``layer`` ""), or nothing when unknown (``layer`` None)."""
    if layer is None:
        return ""
    return f" (called in layer '{layer}')" if layer else f" (called in {model_name}.forward)"


def _export_error(exc: BaseException, model_name: str, path: Path, opset: int, layer: str | None = None) -> ExportError:
    message = _ANSI.sub("", str(exc)).strip()
    op = unsupported_operator(message)
    if op is not None:
        other = "a lower opset (<= 17, legacy exporter)" if opset > LEGACY_MAX_OPSET else "opset 18+ (dynamo exporter)"
        where = called_in(layer, model_name)
        return ExportError(
            f"cannot export {model_name} to {path}: operator '{op}'{where} has no ONNX translation at opset {opset}",
            fix=f"try {other} via lower.opset in model.yaml, replace the layer that calls '{op}' with "
            "ONNX-friendly ops, or pick a target with another backend (e.g. TFLite, PyTorch Mobile)",
        )
    if "## Exception summary" in message:  # dynamo errors: the summary names the real cause
        message = message.split("## Exception summary", 1)[1].split("(Refer to the full stack trace", 1)[0].strip()
    if len(message) > 1000:
        message = message[:1000] + " ..."
    return ExportError(
        f"cannot export {model_name} to {path} at opset {opset}: {type(exc).__name__}: {message or '(no message)'}",
        fix="check that the model runs on the example input, try another lower.opset in model.yaml, "
        "or pick a target with another backend",
    )


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike[str],
    opset: int = 17,
    dynamic_batch: bool = False,
) -> Path:
    """Export ``model`` (in eval mode) with input ``input`` and output ``logits``; return the checked file. A text
    model (:class:`~edgekd.models.text.TokenClassifier`, ``example`` its packed token inputs) takes its token
    inputs by name (``input_ids``, ``attention_mask`` ...), int64, with a dynamic sequence length."""
    out = Path(path)
    model_name = type(model).__name__
    was_training = model.training
    model.eval()
    try:
        with atomic_writer(out) as tmp:
            try:
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.filterwarnings("ignore", category=DeprecationWarning)
                    warnings.filterwarnings("ignore", category=FutureWarning)
                    warnings.filterwarnings("ignore", message=".*training mode.*")
                    form = export_form(model, example, dynamic_batch)
                    if opset <= LEGACY_MAX_OPSET:
                        _export_legacy(form, tmp, opset)
                    else:
                        _export_dynamo(form, tmp, opset)
            except ExportError:
                raise
            except Exception as exc:
                op = unsupported_operator(str(exc))
                layer = layer_calling(model, example, op) if op else None
                raise _export_error(exc, model_name, out, opset, layer) from exc
            check_onnx(
                tmp,
                f"ONNX checker rejected the export of {model_name} to {out}",
                "try another lower.opset in model.yaml; if it persists, report the layer named above",
            )
    finally:
        model.train(was_training)
    return out


def embed_metadata(path: str | os.PathLike[str], props: dict[str, Any]) -> None:
    """Write ``props`` (values as JSON unless strings) into the ONNX file's ``metadata_props``, atomically:
    ONNX Runtime returns them from ``InferenceSession.get_modelmeta().custom_metadata_map``."""
    model = onnx.load(str(path))
    for key, value in props.items():
        text = value if isinstance(value, str) else json.dumps(value)
        entry = next((p for p in model.metadata_props if p.key == key), None) or model.metadata_props.add()
        entry.key, entry.value = key, text
    with atomic_writer(Path(path)) as tmp:
        onnx.save(model, str(tmp))


def embed_preprocessing(path: str | os.PathLike[str], preprocessing: dict[str, Any]) -> None:
    """The input contract (:mod:`edgekd.data.preprocessing`) inside the ONNX file, under its metadata key."""
    if preprocessing:
        embed_metadata(path, {METADATA_KEY: preprocessing})


def check_onnx(path: str | os.PathLike[str], what: str, fix: str) -> None:
    """``onnx.checker`` (full check) on the file at ``path``; ExportError ``"<what>: <the checker's first line>"``."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"{what}: {str(exc).splitlines()[0]}", fix=fix) from exc


@dataclass
class ExportForm:
    """What the exporters are given: the module, its example arguments, their names and dynamic axes."""

    module: nn.Module
    args: tuple[torch.Tensor, ...]
    names: list[str]
    dynamic: dict[str, dict[int, str]]  # input name -> {axis: name}; empty: every size fixed


def export_form(model: nn.Module, example: torch.Tensor, dynamic_batch: bool) -> ExportForm:
    """An image model takes one ``input``; a text model its named token inputs with a dynamic sequence length."""
    inputs = token_inputs(model)
    if inputs is None:
        return ExportForm(model, (example,), [INPUT_NAME], {INPUT_NAME: {0: "batch"}} if dynamic_batch else {})
    assert isinstance(model, TokenClassifier)
    args = tuple(example[:, i].long().contiguous() for i in range(len(inputs)))
    axes = {0: "batch", 1: "sequence"} if dynamic_batch else {1: "sequence"}
    return ExportForm(model.named_inputs().eval(), args, list(inputs), {n: dict(axes) for n in inputs})


def _export_legacy(form: ExportForm, tmp: Path, opset: int) -> None:
    dynamic_axes: dict[str, dict[int, str]] | None = dict(form.dynamic) or None
    if dynamic_axes and any(0 in axes for axes in form.dynamic.values()):
        dynamic_axes[OUTPUT_NAME] = {0: "batch"}
    # the legacy exporter always enables its C++ log and dumps the IR graph there on failure; keep stdout clean
    set_stream = getattr(torch._C, "_jit_set_onnx_log_output_stream", None)
    if set_stream is not None:
        set_stream("stderr")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*advanced indexing.*")
        torch.onnx.export(
            form.module,
            form.args,
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=form.names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
        )


def _export_dynamo(form: ExportForm, tmp: Path, opset: int) -> None:
    dynamic_shapes = None
    args = form.args
    if form.dynamic:
        dims = {axis: torch.export.Dim(name) for axes in form.dynamic.values() for axis, name in axes.items()}
        dynamic_shapes = tuple({axis: dims[axis] for axis in form.dynamic.get(n, {})} for n in form.names)
        # torch.export specialises a size-1 dimension: give dynamic ones two
        grown = []
        for n, a in zip(form.names, args, strict=True):
            for axis in form.dynamic.get(n, {}):
                if a.shape[axis] == 1:
                    a = torch.cat([a, a], dim=axis)
            grown.append(a.contiguous())
        args = tuple(grown)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        torch.onnx.export(
            form.module,
            args,
            str(tmp),
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=form.names,
            output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    data = tmp.with_name(tmp.name + ".data")
    if data.exists():  # external_data=False should prevent this; never leave a stray weights file
        data.unlink()
        raise ExportError(
            f"the exporter wrote weights outside {tmp.name} although a single file was asked for",
            fix="models over 2 GB cannot be a single ONNX file; use opset <= 17 or a smaller model",
        )


def lower(ctx: Context, c: Any, summary: dict[str, Any]) -> None:
    """``student.onnx`` (fp32, opset ``summary["opset"]``), simplified unless ``lower.simplify: false``."""
    opset = summary["opset"]
    assert ctx.student is not None
    final = ctx.run_dir / "student.onnx"
    example = ctx.data.test.x[:1]
    export_onnx(ctx.student, example, final, opset=opset, dynamic_batch=c.dynamic_batch)  # written atomically
    info = simplify_onnx(final, final) if c.simplify else None  # replaced atomically; parity checks the result
    embed_preprocessing(final, ctx.data.preprocessing)
    art = ctx.add_artifact("onnx", final, "onnx", precision="fp32", backend="onnx")
    if info is None:
        return
    art.info["simplify"] = info
    summary["simplify"] = {k: info[k] for k in ("nodes_before", "nodes_after", "method")}
