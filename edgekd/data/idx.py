"""Reader for the IDX format of (Fashion-)MNIST (`*-idx3-ubyte[.gz]`)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from edgekd.core.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or gzip) into a numpy array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc})", fix="check the file is a complete download") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(
            f"{path}: not an IDX file (bad magic number)", fix="point data.path at the MNIST-style IDX files"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX header says {shape} ({expected} bytes) but the file holds {len(raw) - header}",
            fix="the file is truncated or corrupted; reinstall or re-copy it",
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise DataError(
        f"{directory}: no {stem}[.gz]",
        fix="give data.path a folder holding the four Fashion-MNIST IDX files, "
        "or install the Debian package dataset-fashion-mnist",
    )


def load_mnist_dir(directory: str | Path) -> dict[str, np.ndarray]:
    """Load train/test images (N,1,28,28 uint8) and labels (N int64) from an MNIST-layout folder."""
    directory = Path(directory)
    out: dict[str, np.ndarray] = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{directory}: {prefix} images {images.shape} and labels {labels.shape} do not match",
                fix="use the image and label files of the same release",
            )
        out[f"x_{split}"] = images[:, None, :, :]
        out[f"y_{split}"] = labels.astype(np.int64)
    return out
