"""Hugging Face sequence classifiers: the teacher from a local folder, students shrunk from it or configured.

```yaml
teacher: {arch: hf, path: teacher/, task: sequence-classification}   # config.json, weights, tokenizer files
student: {arch: shrink, params: {layers: 3, keep: every_other, intermediate_size: 768, heads: 8}}
student: {arch: hf, params: {num_hidden_layers: 2, hidden_size: 256, num_attention_heads: 4}}
```

Folders load with ``local_files_only`` (no hub access at run time) and eager attention (every exporter lowers
it; SDPA has no TFLite lowering). ``shrink`` keeps some of the teacher's layers (every other, the first k, k spread
evenly or a list), each copied with the embeddings, pooler and classifier; a narrower FFN keeps the teacher's
most important channels (largest product of the norms of a channel's input row and output column), fewer heads the
teacher's most important heads per layer (largest product of the norms of a head's value rows and output-projection
columns). ``hf`` builds a
small config of the teacher's family (the teacher's config with ``params`` changed) and inherits every tensor
whose name (its layer mapped as ``shrink`` maps them) and shape fit.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.core.errors import ModelError
from edgekd.models.text import TOKEN_INPUTS, TokenClassifier

TASKS = ("sequence-classification",)
#: files of which at least one makes a folder's tokenizer loadable
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json", "spiece.model")
KEEP = ("every_other", "first", "spread")


def _transformers(key: str) -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ModelError(
            f"{key}.arch hf needs the transformers package, which cannot be imported here ({exc})",
            fix="pip install transformers tokenizers (through the constraints file)",
        ) from exc
    return transformers


@contextlib.contextmanager
def _quiet() -> Any:
    """transformers prints load reports and warnings to stdout/stderr; a compile shows its own messages."""
    transformers = _transformers("teacher")
    level = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def check_folder(path: Path, key: str) -> None:
    """A Hugging Face model folder: config.json, weights and tokenizer files, each named when missing."""
    if not path.is_dir():
        raise ModelError(
            f"{key}.path {path}: no such folder", fix=f"set {key}.path to a folder written by save_pretrained"
        )
    if not (path / "config.json").is_file():
        raise ModelError(f"{key}.path {path}: no config.json", fix="give the folder save_pretrained wrote")
    weights = [p for p in path.iterdir() if p.suffix == ".safetensors" or p.name == "pytorch_model.bin"]
    if not weights:
        raise ModelError(
            f"{key}.path {path}: no weights (model.safetensors or pytorch_model.bin)",
            fix="save the model with model.save_pretrained(path)",
        )
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelError(
            f"{key}.path {path}: no tokenizer files ({', '.join(TOKENIZER_FILES)})",
            fix="save the tokenizer beside the model: tokenizer.save_pretrained(path)",
        )


def label_names(config: Any) -> list[str]:
    """The class names of a config, in class-index order (``id2label``)."""
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    n = int(getattr(config, "num_labels", len(id2label)) or len(id2label))
    return [id2label.get(i, f"LABEL_{i}") for i in range(n)]


def generic_labels(names: list[str]) -> bool:
    """True when the class names are transformers' defaults (LABEL_0, LABEL_1, ...): no names were given."""
    return names == [f"LABEL_{i}" for i in range(len(names))]


def _inputs_of(model: nn.Module, config: Any) -> tuple[str, ...]:
    import inspect

    params = inspect.signature(model.forward).parameters
    inputs = tuple(n for n in TOKEN_INPUTS if n in params)
    if "token_type_ids" in inputs and int(getattr(config, "type_vocab_size", 0) or 0) < 2:
        inputs = tuple(n for n in inputs if n != "token_type_ids")  # one segment only: always zero
    return inputs


def load_teacher(path: Path, task: str, key: str = "teacher") -> TokenClassifier:
    """The sequence classifier saved in the folder ``path`` (local files only)."""
    check_folder(path, key)
    if task not in TASKS:
        raise ModelError(f"{key}.task {task!r} is not supported", fix=f"use one of: {', '.join(TASKS)}")
    transformers = _transformers(key)
    try:
        with _quiet():
            config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=True, attn_implementation="eager"
            )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"{key}.path {path}: transformers cannot load a sequence classifier from it: {str(exc).splitlines()[0]}",
            fix="give a folder written by AutoModelForSequenceClassification.save_pretrained",
        ) from exc
    return TokenClassifier(model, _inputs_of(model, config), label_names(config), key).eval()


def load_tokenizer(path: Path, key: str = "teacher") -> Any:
    """The tokenizer saved beside a model (local files only)."""
    transformers = _transformers(key)
    try:
        with _quiet():
            return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"{key}.path {path}: cannot load its tokenizer: {str(exc).splitlines()[0]}",
            fix="save the tokenizer beside the model: tokenizer.save_pretrained(path)",
        ) from exc


def encoder_layers(model: nn.Module, key: str) -> nn.ModuleList:
    """The transformer blocks of a Hugging Face encoder (the longest ``nn.ModuleList`` of blocks)."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise ModelError(f"{key}: no list of transformer layers found", fix="use a BERT-style encoder classifier")
    return max(lists, key=len)


def kept_layers(n: int, layers: int | list[int], keep: str, key: str) -> list[int]:
    """The teacher layer indices a student of ``layers`` keeps out of ``n``."""
    if isinstance(layers, list):
        bad = [i for i in layers if not 0 <= i < n]
        if bad or not layers or len(set(layers)) != len(layers) or layers != sorted(layers):
            raise ModelError(
                f"{key}.params.layers {layers}: must be distinct, increasing indices of the teacher's {n} layers",
                fix=f"list indices from 0 to {n - 1}, e.g. {list(range(0, n, 2))}",
            )
        return layers
    if not 1 <= layers <= n:
        raise ModelError(f"{key}.params.layers {layers}: the teacher has {n} layers", fix=f"keep 1 to {n} of them")
    if keep == "first":
        return list(range(layers))
    if keep == "every_other":
        chosen = list(range(1, n, 2))[-layers:] if layers <= n // 2 else []
        if len(chosen) != layers:
            raise ModelError(
                f"{key}.params: keep every_other gives {n // 2} layers of {n}, not {layers}",
                fix=f"set layers to at most {n // 2}, or keep: spread",
            )
        return chosen
    if keep == "spread":  # evenly spaced, the last layer always kept
        return sorted({round((i + 1) * n / layers) - 1 for i in range(layers)})
    raise ModelError(f"{key}.params.keep {keep!r}", fix=f"use one of: {', '.join(KEEP)}")


def _ffn_channels(layer: nn.Module, width: int) -> torch.Tensor:
    """The ``width`` most important FFN channels of a BERT-style layer (sorted indices)."""
    up, down = layer.intermediate.dense, layer.output.dense  # type: ignore[union-attr]
    importance = up.weight.norm(dim=1) * down.weight.norm(dim=0)
    return importance.topk(width).indices.sort().values


def _narrow_ffn(layer: nn.Module, width: int) -> None:
    keep = _ffn_channels(layer, width)
    up, down = layer.intermediate.dense, layer.output.dense  # type: ignore[union-attr]
    new_up = nn.Linear(up.in_features, width)
    new_down = nn.Linear(width, down.out_features)
    with torch.no_grad():
        new_up.weight.copy_(up.weight[keep])
        new_up.bias.copy_(up.bias[keep])
        new_down.weight.copy_(down.weight[:, keep])
        new_down.bias.copy_(down.bias)
    layer.intermediate.dense, layer.output.dense = new_up, new_down  # type: ignore[union-attr]


def _head_rows(heads: torch.Tensor, size: int) -> torch.Tensor:
    return (heads[:, None] * size + torch.arange(size)).flatten()


def _narrow_heads(layer: nn.Module, heads: int) -> None:
    """Keep the ``heads`` most important heads of a BERT-style layer's self-attention (query/key/value rows and the
    output projection's columns of those heads)."""
    attn, out = layer.attention.self, layer.attention.output.dense  # type: ignore[union-attr]
    n, size = int(attn.num_attention_heads), int(attn.attention_head_size)
    value = attn.value.weight.view(n, size, -1).flatten(1).norm(dim=1)
    output = out.weight.view(out.out_features, n, size).transpose(0, 1).flatten(1).norm(dim=1)
    keep = _head_rows((value * output).topk(heads).indices.sort().values, size)
    for name in ("query", "key", "value"):
        old = getattr(attn, name)
        new = nn.Linear(old.in_features, len(keep), bias=old.bias is not None)
        with torch.no_grad():
            new.weight.copy_(old.weight[keep])
            if old.bias is not None:
                new.bias.copy_(old.bias[keep])
        setattr(attn, name, new)
    new_out = nn.Linear(len(keep), out.out_features, bias=out.bias is not None)
    with torch.no_grad():
        new_out.weight.copy_(out.weight[:, keep])
        if out.bias is not None:
            new_out.bias.copy_(out.bias)
    layer.attention.output.dense = new_out  # type: ignore[union-attr]
    attn.num_attention_heads, attn.all_head_size = heads, heads * size


def _shrink_layers(blocks: nn.ModuleList, what: str, width: int, limit: int, narrow: Any, key: str) -> None:
    if not 1 <= width <= limit:
        raise ModelError(f"{key}.params.{what} {width}: the teacher has {limit}", fix=f"give 1 to {limit}")
    try:
        for block in blocks:
            narrow(block, width)
    except AttributeError as exc:
        raise ModelError(
            f"{key}.params.{what}: the teacher's layers are not BERT-style (attention.self.query/key/value, "
            "attention.output.dense, intermediate.dense, output.dense)",
            fix=f"leave {what} out",
        ) from exc


def shrink(teacher: TokenClassifier, params: dict[str, Any], key: str = "student") -> TokenClassifier:
    """A copy of the teacher with some of its layers (and optionally a narrower FFN or fewer attention heads),
    weights inherited."""
    known = {"layers", "keep", "intermediate_size", "heads"}
    if unknown := sorted(set(params) - known):
        raise ModelError(f"{key}.params: unknown {', '.join(unknown)} for arch shrink", fix=f"use {sorted(known)}")
    model = copy.deepcopy(teacher.model)
    blocks = encoder_layers(model, key)
    n = len(blocks)
    keep = kept_layers(n, params.get("layers", max(1, n // 2)), params.get("keep", "every_other"), key)
    kept = nn.ModuleList([blocks[i] for i in keep])
    blocks._modules.clear()
    for block in kept:
        blocks.append(block)
    config = model.config
    config.num_hidden_layers = len(keep)
    if (width := params.get("intermediate_size")) is not None:
        _shrink_layers(blocks, "intermediate_size", int(width), config.intermediate_size, _narrow_ffn, key)
        config.intermediate_size = int(width)
    if (heads := params.get("heads")) is not None:
        _shrink_layers(blocks, "heads", int(heads), config.num_attention_heads, _narrow_heads, key)
        student_heads = int(heads)
    else:
        student_heads = config.num_attention_heads
    _renumber(model, len(keep))
    student = TokenClassifier(model, teacher.inputs, teacher.label_names, key).eval()
    student.shrink = {"teacher_layers": keep, "teacher_num_layers": n, "heads": student_heads}  # type: ignore[assignment]
    return student


def _renumber(model: nn.Module, layers: int) -> None:
    """Blocks that know their own index (for caches) take their new position."""
    for i, block in enumerate(encoder_layers(model, "student")):
        for m in block.modules():
            if hasattr(m, "layer_idx"):
                m.layer_idx = i
    del layers


def from_config(teacher: TokenClassifier, params: dict[str, Any], key: str = "student") -> TokenClassifier:
    """A model of the teacher's family with the teacher's config changed by ``params``, inheriting what fits
    (``inherit: false`` in ``params``: randomly initialised, e.g. the baseline that shows what inheritance gives)."""
    transformers = _transformers(key)
    params = dict(params)
    inherit = params.pop("inherit", True)
    if not isinstance(inherit, bool):
        raise ModelError(f"{key}.params.inherit {inherit!r}: true or false", fix="inherit: true (the default) or false")
    base = teacher.model.config.to_dict()
    unknown = sorted(k for k in params if k not in base)
    if unknown:
        raise ModelError(
            f"{key}.params: {', '.join(unknown)} not in the teacher's config ({base.get('model_type')})",
            fix=f"use config keys such as num_hidden_layers, hidden_size, num_attention_heads, intermediate_size; "
            f"the teacher's are in {json.dumps(sorted(base))[:300]}",
        )
    config = type(teacher.model.config).from_dict({**base, **params})
    config._attn_implementation = "eager"
    try:
        with _quiet():
            model = transformers.AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    except (ValueError, TypeError) as exc:
        raise ModelError(
            f"{key}.params: not a valid config: {exc}", fix="check the sizes (hidden_size divisible by the heads)"
        ) from exc
    n_t = len(encoder_layers(teacher.model, "teacher"))
    n_s = len(encoder_layers(model, key))
    if inherit:
        mapping = dict(enumerate(kept_layers(n_t, min(n_s, n_t), "spread", key)))
        inherit_matching(model, teacher.model, mapping)
    return TokenClassifier(model, teacher.inputs, teacher.label_names, key).eval()


def inherit_matching(student: nn.Module, teacher: nn.Module, layer_map: dict[int, int]) -> list[str]:
    """Copy every teacher tensor whose name (student layer i read from teacher layer ``layer_map[i]``) and shape
    match; returns the student names that were inherited."""
    import re

    t_state = teacher.state_dict()
    s_state = student.state_dict()
    done = []
    pattern = re.compile(r"(\.layer\.)(\d+)(\.)")
    for name, tensor in s_state.items():
        match = pattern.search(name)
        source = name
        if match:
            i = int(match.group(2))
            if i not in layer_map:
                continue
            source = name[: match.start(2)] + str(layer_map[i]) + name[match.end(2) :]
        if source in t_state and t_state[source].shape == tensor.shape:
            s_state[name] = t_state[source].clone()
            done.append(name)
    student.load_state_dict(s_state)
    return done
