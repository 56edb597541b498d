"""Build models named in model.yaml and load their checkpoints safely."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.config.model import ModelSpec
from edgekd.core.errors import ModelError
from edgekd.core.schema import did_you_mean
from edgekd.models import zoo
from edgekd.models.taps import NAMED
from edgekd.models.text import is_text

#: architectures of text models: a Hugging Face folder (or config) and the teacher's own layers
TEXT_ARCHS = ("hf", "shrink")


def arch_problem(arch: str) -> str | None:
    """What is wrong with an ``arch`` name of model.yaml, or None when it names a zoo architecture or a builder."""
    if ":" in arch or arch in zoo.names() or arch in TEXT_ARCHS:
        return None
    return (
        f"unknown architecture {arch!r}{did_you_mean(arch, [*zoo.names(), *TEXT_ARCHS])}; known: "
        f"{', '.join(zoo.names())}, {', '.join(TEXT_ARCHS)} (text models), or 'package.module:function' for your own "
        "builder"
    )


class Logits(nn.Module):
    """A model whose forward returns a tuple, list, dict or ModelOutput, made to return the logits in it: the
    element at ``output`` (``teacher.output`` / ``student.output`` in model.yaml). Its weights are ``model``'s."""

    def __init__(self, model: nn.Module, output: int | str, key: str) -> None:
        super().__init__()
        self.model, self.output, self.key = model, output, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pick_logits(self.model(x), self.output, self.key)


def returned(out: Any) -> str:
    """What a forward returned, for error messages: its keys, its number of elements, or its type."""
    if hasattr(out, "keys"):
        return f"keys {', '.join(map(str, out.keys()))}"
    return f"{len(out)} elements" if isinstance(out, tuple | list) else type(out).__name__


def pick_logits(out: Any, output: int | str, key: str) -> torch.Tensor:
    """The element ``output`` of a forward's result (index of a tuple/list, key of a dict/ModelOutput)."""
    try:
        if isinstance(output, int):
            if not isinstance(out, tuple | list):
                raise TypeError(f"forward returns a {type(out).__name__}, which takes a key, not an index")
            value = out[output]
        else:
            value = out[output] if isinstance(out, dict) or hasattr(out, "keys") else getattr(out, output)
    except (IndexError, KeyError, AttributeError, TypeError) as exc:
        raise ModelError(
            f"{key}.output {output!r}: not in what forward returns ({returned(out)}): {exc}",
            fix=f"set {key}.output to an index of the tuple or a key of the dict that holds the logits",
        ) from exc
    if not isinstance(value, torch.Tensor):
        raise ModelError(
            f"{key}.output {output!r} is a {type(value).__name__}, not the logits tensor",
            fix=f"set {key}.output to the element holding the [N, num_classes] logits",
        )
    return value


def build(spec: ModelSpec, key: str, teacher: nn.Module | None = None, base_dir: Path | None = None) -> nn.Module:
    """Instantiate ``spec.arch`` with ``spec.params``; ``key`` (teacher/student) names it in errors. With
    ``spec.output`` the model is wrapped in :class:`Logits`. Text models (``hf``, ``shrink``): a teacher loads its
    folder (``spec.path``, relative to ``base_dir``); a student is made from ``teacher``."""
    if spec.arch == "shrink" and key != "teacher" and teacher is not None and not is_text(teacher):
        return _shrink_image(spec, key, teacher)
    if spec.arch in TEXT_ARCHS:
        return _build_text(spec, key, teacher, base_dir)
    try:
        model = zoo.build(spec.arch, spec.params)
        if spec.shapes:
            from edgekd.models.shapes import apply_shapes

            apply_shapes(model, spec.shapes)
        if spec.taps is not None:  # read by edgekd.models.taps (paths inside a Logits wrapper get its prefix)
            prefix = "" if spec.output is None else "model."
            named = {k: prefix + v for k, v in spec.taps.model_dump(exclude_none=True).items()}
        model = model if spec.output is None else Logits(model, spec.output, key)
        if spec.taps is not None:
            setattr(model, NAMED, named)
        return model
    except ImportError as exc:
        library = spec.arch.partition(":")[0]
        if library in zoo.LIBRARIES:
            raise ModelError(
                f"{key}.arch: {spec.arch!r} needs {library}, which cannot be imported here ({exc})",
                fix=f"pip install {library} (the release built for torch {torch.__version__.split('+')[0]}, "
                "through the constraints file) and check the model name",
            ) from exc
        raise ModelError(
            f"{key}.arch: cannot import {spec.arch!r} ({exc})",
            fix="make the module importable (install it or set PYTHONPATH) and check the function name",
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{key}: cannot build {spec.arch} with params {spec.params}: {exc}",
            fix=f"check {key}.params (and {key}.shapes) against the {spec.arch} builder's arguments",
        ) from exc


def _shrink_image(spec: ModelSpec, key: str, teacher: nn.Module) -> nn.Module:
    """An image teacher's own architecture, narrowed and shallower (:mod:`edgekd.models.shrink_image`); a pruned
    one takes its layer shapes after."""
    from edgekd.models.shrink_image import shrink_image

    model = shrink_image(teacher, dict(spec.params), key)
    if spec.shapes:
        from edgekd.models.shapes import apply_shapes

        apply_shapes(model, spec.shapes)
    return model


def _build_text(spec: ModelSpec, key: str, teacher: nn.Module | None, base_dir: Path | None) -> nn.Module:
    from edgekd.models import hf
    from edgekd.models.text import TokenClassifier

    if key == "teacher" or spec.path is not None:
        if spec.arch != "hf" or spec.path is None:
            raise ModelError(f"{key}.arch {spec.arch}: a text model loaded from a folder", fix=f"set {key}.arch hf "
                             f"and {key}.path")  # fmt: skip
        path = spec.path if spec.path.is_absolute() or base_dir is None else base_dir / spec.path
        return hf.load_teacher(path, spec.task, key)
    if not isinstance(teacher, TokenClassifier):
        raise ModelError(f"{key}.arch {spec.arch} is made from a text teacher", fix="set teacher.arch hf")
    return hf.shrink(teacher, spec.params, key) if spec.arch == "shrink" else hf.from_config(teacher, spec.params, key)


def load_state_dict(path: Path, key: str) -> dict[str, torch.Tensor]:
    """Load a tensor-only checkpoint: ``.safetensors``, or a torch file read with ``weights_only=True``
    (pickles holding code are refused)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(
                f"{key}.checkpoint {path}: not a valid safetensors file ({exc})",
                fix="write it with safetensors.torch.save_file(model.state_dict(), path)",
            ) from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # not code, just bytes torch cannot parse
            raise ModelError(
                f"{key}.checkpoint {path}: cannot read: not a torch checkpoint file",
                fix="give a file written by torch.save(model.state_dict(), path)",
            ) from exc
        raise ModelError(
            f"{key}.checkpoint {path}: refused to load: the file holds Python objects, not only tensors "
            "(loading it could run arbitrary code)",
            fix="re-save it with torch.save(model.state_dict(), path) from code you trust",
        ) from exc
    except (OSError, RuntimeError, EOFError) as exc:
        raise ModelError(
            f"{key}.checkpoint {path}: cannot read ({exc})", fix="give a file written by torch.save"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(
            f"{key}.checkpoint {path}: not a state_dict (name -> tensor)",
            fix="save with torch.save(model.state_dict(), path)",
        )
    return state


def load_weights(model: nn.Module, path: Path, key: str) -> None:
    """Load a checkpoint of the model as its builder makes it (inside a :class:`Logits` wrapper, when there is
    one), refusing one that does not fit with the names and shapes that differ."""
    from edgekd.models.text import TokenClassifier

    if isinstance(model, Logits | TokenClassifier):
        model = model.model
    state = load_state_dict(path, key)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes (e.g. {'; '.join(shapes[:2])})")
        raise ModelError(
            f"{key}.checkpoint {path} does not fit {key}.arch/params: " + ", ".join(parts),
            fix=f"set {key}.params to the architecture the checkpoint was trained with",
        )
    model.load_state_dict(state)


def check_input(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, key: str) -> None:
    """One forward pass on zeros: the model must accept data.input_shape and give num_classes logits."""
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except RuntimeError as exc:
        raise ModelError(
            f"{key} does not accept inputs of data.input_shape {list(input_shape)}: {str(exc).splitlines()[0]}",
            fix=f"set data.input_shape to what the model expects, or {key}.params.in_channels",
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise ModelError(
            f"{key} returns a {type(out).__name__} from forward, not a logits tensor of shape [N, {num_classes}]",
            fix=f"set {key}.output in model.yaml to the index (tuple) or key (dict, ModelOutput) of the logits; "
            f"it returns {returned(out)}",
        )
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise ModelError(
            f"{key} gives outputs of shape {list(out.shape)}, expected [N, {num_classes}] (data.num_classes)",
            fix=f"set {key}.params.num_classes to {num_classes} or fix data.num_classes",
        )
