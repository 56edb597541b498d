"""Text classifiers as edgekd models: a sample's token inputs packed into one tensor.

The passes move one tensor per sample (batching, shuffling, caching the teacher's logits, DDP shards). A text
model's inputs (``input_ids``, ``attention_mask``, ``token_type_ids``) are therefore packed as the rows of one
``(N, F, L)`` tensor, ``F`` the number of inputs in :attr:`TokenClassifier.inputs` order and ``L`` the configured
``data.max_length``. :class:`TokenClassifier` unpacks it for the Hugging Face model it holds; the files lowered
from it take the inputs by name instead (:meth:`TokenClassifier.named_inputs`), with dynamic batch and sequence.

Columns no sample of a batch uses (right padding past the longest sequence) are cut before the model runs, so a
batch of short sentences costs what its own length costs; the logits are the same (the attention mask already
keeps padding out). All-zero inputs (edgekd's shape probes) are kept whole: they stand for a full-length sample.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgekd.core.errors import ModelError

#: the token inputs a text model may take, in packing order
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _exporting() -> bool:
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())


class TokenClassifier(nn.Module):
    """A sequence classifier (``model(**token_inputs).logits``) taking packed token inputs ``(N, F, L)``."""

    def __init__(self, model: nn.Module, inputs: tuple[str, ...], label_names: list[str], key: str) -> None:
        super().__init__()
        unknown = [n for n in inputs if n not in TOKEN_INPUTS]
        if unknown or "input_ids" not in inputs:
            raise ValueError(f"token inputs {inputs}: must include input_ids and be among {TOKEN_INPUTS}")
        self.model = model
        self.inputs = tuple(inputs)
        self.label_names = list(label_names)
        self.key = key

    @property
    def config(self) -> Any:
        return getattr(self.model, "config", None)

    def unpack(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The named token inputs of a packed batch, with the columns no sample uses cut off."""
        if x.ndim != 3 or x.shape[1] != len(self.inputs):
            raise ModelError(
                f"{self.key}: a text model takes packed token inputs of shape [N, {len(self.inputs)}, length] "
                f"({', '.join(self.inputs)}), got {list(x.shape)}",
                fix="give text data (data.source: text) for a text model",
            )
        x = x.long()
        feeds = {name: x[:, i] for i, name in enumerate(self.inputs)}
        mask = feeds.get("attention_mask")
        if mask is not None and not _exporting():
            used = mask.any(0).nonzero()
            if len(used):
                end = int(used[-1]) + 1
                feeds = {k: v[:, :end] for k, v in feeds.items()}
        return feeds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(**self.unpack(x)).logits

    def named_inputs(self) -> NamedTokenInputs:
        """The same model taking its token inputs as separate arguments (what ONNX and TFLite files take)."""
        return NamedTokenInputs(self.model, self.inputs)


class NamedTokenInputs(nn.Module):
    """``forward(input_ids, attention_mask, ...)`` -> logits: the export form of a :class:`TokenClassifier`."""

    def __init__(self, model: nn.Module, inputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.inputs = inputs

    def forward(
        self, first: torch.Tensor, second: torch.Tensor | None = None, third: torch.Tensor | None = None
    ) -> torch.Tensor:  # named positions, not *args: torch.export needs one argument per input
        args = (first, second, third)[: len(self.inputs)]
        return self.model(**dict(zip(self.inputs, args, strict=True))).logits


def is_text(model: nn.Module) -> bool:
    return isinstance(model, TokenClassifier)


def packed_shape(model: nn.Module, max_length: int) -> tuple[int, int]:
    """The per-sample shape of ``model``'s packed inputs at ``max_length`` tokens."""
    assert isinstance(model, TokenClassifier)
    return (len(model.inputs), max_length)


def attention_mask(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """For a text model, the boolean attention mask (B x L, true at real tokens) of the packed batch ``x``, cut as
    the model cuts it (so it lines up with what its layers computed); None for other models or without a mask."""
    if not isinstance(model, TokenClassifier):
        return None
    mask = model.unpack(x).get("attention_mask")
    return mask.bool() if mask is not None else None


def token_inputs(model: nn.Module) -> tuple[str, ...] | None:
    """The token inputs of a text model, in packing order; None for any other model."""
    return model.inputs if isinstance(model, TokenClassifier) else None
