"""In-memory splits of a classification data set, normalised and ready for training."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgekd.data.stream import is_streamed


@dataclass
class Split:
    """Images ``x`` (N, C, H, W float32, normalised), or packed token inputs (N, F, L int64, see
    :mod:`edgekd.models.text`), and labels ``y`` (N int64)."""

    x: torch.Tensor  # or, for a streamed split, edgekd.data.stream.ImageFiles (decodes what it is indexed with)
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def streamed(self) -> bool:
        return is_streamed(self.x)

    def take(self, n: int) -> Split:
        """The first ``n`` samples, in memory (decoded, for a streamed split)."""
        return Split(self.x[:n], self.y[:n])

    def subset(self, idx: torch.Tensor) -> Split:
        """The samples at ``idx``; a streamed split stays streamed (nothing is decoded)."""
        x = self.x.subset(idx) if is_streamed(self.x) else self.x[idx]  # type: ignore[attr-defined]
        return Split(x, self.y[idx])

    def sha256(self) -> str:
        """sha256 of the images and labels as used (after normalisation): names a split exactly. A streamed split
        is named by its files (path, size, modification time) and normalisation, not decoded."""
        digest = hashlib.sha256()
        for t in (self.x, self.y):
            if is_streamed(t):
                t.update_digest(digest)  # type: ignore[attr-defined]
                continue
            digest.update(str((tuple(t.shape), str(t.dtype))).encode())
            digest.update(t.detach().contiguous().numpy().tobytes())
        return digest.hexdigest()


@dataclass
class DataBundle:
    """The splits a compile uses, and where they came from (for the report)."""

    train: Split
    val: Split
    test: Split
    calibration: Split
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: list[float]
    std: list[float]
    source: str
    notes: list[str] = field(default_factory=list)
    unlabelled: bool = False
    preprocessing: dict[str, Any] = field(default_factory=dict)  # the models' input contract (data.preprocessing)
    truncated: dict[str, int] = field(default_factory=dict)  # text: per split, texts cut to data.max_length
    tokenizer_dir: Path | None = None  # text: the folder of the tokenizer files that ship beside the artifacts
    mask_token_id: int | None = None  # text: the tokenizer's mask token (None: it has none)
    special_token_ids: tuple[int, ...] = ()  # text: the tokenizer's special tokens ([CLS], [SEP], [PAD], ...)
    streamed: bool = False  # images read from disk per batch (edgekd.data.stream), not held in memory

    @property
    def is_text(self) -> bool:
        return self.preprocessing.get("kind") == "text"

    def label_with(self, predict: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Give the training, validation, test and calibration images the labels ``predict`` returns (the teacher as
        annotator: accuracies become agreement with it)."""
        for s in (self.train, self.val, self.test, self.calibration):
            if len(s):
                s.y = predict(s.x).argmax(1).to(torch.int64)
        self.unlabelled = False

    def content_sha256(self) -> str:
        """sha256 over every split's images and labels as the compile uses them (after labelling and
        normalisation), so any change of the data, whatever its source, changes the compile's cache key."""
        digest = hashlib.sha256()
        for s in (self.train, self.val, self.test, self.calibration):
            digest.update(s.sha256().encode())
        return digest.hexdigest()

    def describe(self) -> dict[str, object]:
        return {
            "source": self.source,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
            "calibration": len(self.calibration),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "normalize": {"mean": self.mean, "std": self.std},
            "preprocessing": self.preprocessing,
            "notes": self.notes,
            "streamed": self.streamed,
            **({"truncated": self.truncated} if self.is_text else {}),
        }
