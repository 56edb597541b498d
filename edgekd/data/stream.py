"""Images read from disk when a batch needs them, never all at once: the store behind streamed splits.

:class:`ImageFiles` stands where a split's image tensor would: it has a ``shape`` and a length, and indexing it
(an index, a slice, an index tensor) decodes just those files, resized and normalised exactly as the in-memory
sources do, into a float32 NCHW tensor. ``subset`` narrows it without decoding anything. The training loop draws
its batches through :func:`batches`, a ``torch.utils.data.DataLoader`` whose worker processes decode the next
batches while the current one trains; everything else (accuracy, teacher logits, calibration) reads it in chunks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.core.errors import DataError


def to_float(images: np.ndarray, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 (or float in [0,1]) NCHW images -> normalised float32 tensor."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    scale = x.dtype == torch.uint8
    x = x.to(torch.float32, copy=True)  # one float copy, then in place: a large split is held once, not thrice
    if scale:
        x.div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def reason(exc: Exception) -> str:
    """The first line of an exception's message (its type where it has none), for error messages naming files."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def decode(path: Path, shape: tuple[int, int, int], resize: int | None = None) -> np.ndarray:
    """One image file as (C, H, W) uint8, converted to gray or RGB and brought to ``shape`` by PIL (bicubic):
    without ``resize`` stretched to H x W; with it, its shorter side resized to ``resize`` (aspect ratio kept)
    and the centre H x W cut out (the usual ImageNet evaluation preprocessing). Both sources, in memory and
    streamed, decode through here."""
    from PIL import Image

    c, h, w = shape
    with Image.open(path) as opened:
        img = opened.convert("L" if c == 1 else "RGB")
        if resize is None:
            img = img.resize((w, h), Image.Resampling.BICUBIC)
        else:
            scale = resize / min(img.width, img.height)
            size = (max(w, round(img.width * scale)), max(h, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.BICUBIC)
            left, top = round((size[0] - w) / 2), round((size[1] - h) / 2)
            img = img.crop((left, top, left + w, top + h))
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if c == 1 else a.transpose(2, 0, 1)


class ImageFiles:
    """A split's images as files on disk (see the module doc). ``workers``: threads that decode a batch (PIL
    releases the GIL while it decodes and resizes); 0 decodes in the calling thread."""

    dtype = torch.float32
    ndim = 4

    def __init__(
        self,
        files: Sequence[Path],
        shape: tuple[int, int, int],
        mean: Sequence[float],
        std: Sequence[float],
        workers: int = 0,
        resize: int | None = None,
    ) -> None:
        self.files = [Path(f) for f in files]
        self.sample_shape = tuple(int(v) for v in shape)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.workers = workers
        self.resize = resize

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), *self.sample_shape))

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"ImageFiles({len(self.files)} files, {list(self.sample_shape)})"

    def _positions(self, key: Any) -> list[int]:
        if isinstance(key, slice):
            return list(range(len(self.files))[key])
        if isinstance(key, torch.Tensor | np.ndarray):
            key = key.tolist()
        if isinstance(key, list | tuple):
            return [int(i) for i in key]
        raise TypeError(f"ImageFiles indices are slices, index lists or tensors, not {type(key).__name__}")

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, int | np.integer):
            return self.read([int(key)])[0]
        return self.read(self._positions(key))

    def read(self, positions: Sequence[int]) -> torch.Tensor:
        """The images at ``positions``, decoded and normalised: (len(positions), C, H, W) float32."""
        files = [self.files[i] for i in positions]
        if self.workers > 1 and len(files) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                arrays = list(pool.map(self._decode, files))
        else:
            arrays = [self._decode(f) for f in files]
        pixels = np.stack(arrays) if arrays else np.zeros((0, *self.sample_shape), dtype=np.uint8)
        return to_float(pixels, self.mean, self.std)  # normalised as the in-memory splits are

    def _decode(self, path: Path) -> np.ndarray:
        try:
            return decode(path, self.sample_shape, self.resize)  # type: ignore[arg-type]
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(
                f"{path}: cannot be read while streaming ({reason(exc)})",
                fix="replace or remove the file (it passed the header check when the data was listed)",
            ) from exc

    def subset(self, key: Any) -> ImageFiles:
        """The files at ``key`` (slice, index list or tensor, boolean mask), nothing decoded."""
        if isinstance(key, torch.Tensor) and key.dtype == torch.bool:
            key = key.nonzero().flatten()
        files = [self.files[i] for i in self._positions(key)]
        return ImageFiles(files, self.sample_shape, self.mean, self.std, self.workers, self.resize)

    def numpy(self) -> np.ndarray:
        """Every image decoded at once (only for callers that need the whole array; prefer chunks)."""
        return self.read(range(len(self.files))).numpy()

    def update_digest(self, digest: Any) -> None:
        """Name the images without decoding them: each file's path, size and modification time, and the
        normalisation."""
        digest.update(str((self.sample_shape, self.mean, self.std, self.resize)).encode())
        for f in self.files:
            st = os.stat(f)
            digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())

    def sha256(self) -> str:
        digest = hashlib.sha256()
        self.update_digest(digest)
        return digest.hexdigest()


class _Batches(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """The DataLoader's view of an ImageFiles: a batch of positions in, a decoded batch out."""

    def __init__(self, images: ImageFiles) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, position: int) -> torch.Tensor:
        return self.images.read([position])[0]

    def __getitems__(self, positions: list[int]) -> torch.Tensor:
        return self.images.read(positions)


def _as_is(batch: torch.Tensor) -> torch.Tensor:
    return batch


def batches(images: ImageFiles, order: Sequence[Sequence[int]], workers: int) -> Iterator[torch.Tensor]:
    """The decoded batches of ``images`` at the index lists ``order``, in that order: a DataLoader with
    ``workers`` worker processes decoding ahead of the consumer (0: in this process)."""
    loader = torch.utils.data.DataLoader(
        _Batches(ImageFiles(images.files, images.sample_shape, images.mean, images.std, 0, images.resize)),
        batch_sampler=[list(map(int, b)) for b in order],
        num_workers=workers,
        collate_fn=_as_is,
        prefetch_factor=2 if workers else None,
    )
    yield from loader


def chunks(x: Any, size: int = 512) -> Iterator[Any]:
    """``x`` (a tensor, an array or :class:`ImageFiles`) in consecutive pieces of ``size`` samples."""
    for i in range(0, len(x), size):
        yield x[i : i + size]


def is_streamed(x: Any) -> bool:
    return isinstance(x, ImageFiles)


def to_plain(x: Any) -> Any:
    """``x`` as ``torch.load(weights_only=True)`` reads it back (for the DDP job file): a tensor as it is,
    streamed images as a dict of their file list and decoding settings."""
    if not is_streamed(x):
        return x
    return {"image_files": [str(f) for f in x.files], "shape": list(x.sample_shape), "mean": x.mean, "std": x.std,
            "workers": x.workers, "resize": x.resize}  # fmt: skip


def from_plain(x: Any) -> Any:
    """The inverse of :func:`to_plain`."""
    if isinstance(x, dict) and "image_files" in x:
        return ImageFiles([Path(f) for f in x["image_files"]], tuple(x["shape"]), x["mean"], x["std"], x["workers"],
                          x["resize"])  # fmt: skip
    return x
