"""Data sources named by ``data.source`` in model.yaml. Each returns raw arrays:

``x_train`` (N, C, H, W, uint8 or float in [0, 1]), ``y_train`` (N, int), ``x_test``, ``y_test``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgekd.config.model import DataConfig
from edgekd.core.errors import DataError
from edgekd.data.idx import load_mnist_dir

Raw = dict[str, np.ndarray]
KEYS = ("x_train", "y_train", "x_test", "y_test")

FASHION_MNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_SUBSET = Path(__file__).resolve().parents[1] / "bundled" / "fashion-mnist-subset.npz"  # package data
FASHION_MNIST_NORMALIZE = ([0.2860], [0.3530])


def _npz(path: Path, unlabelled_ok: bool = False) -> Raw:
    """``unlabelled_ok`` (data.labels: teacher): ``y_train`` may be absent; it is then all -1 until the
    teacher labels the images."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in KEYS if k not in f.files]
            if unlabelled_ok and missing == ["y_train"] and "x_train" in f.files:
                raw = {k: f[k] for k in KEYS if k != "y_train"}
                return {**raw, "y_train": np.full(len(raw["x_train"]), -1, dtype=np.int64)}
            if missing:
                raise DataError(
                    f"{path}: missing arrays {', '.join(missing)} (has {', '.join(f.files) or 'none'})",
                    fix="save the file with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)",
                )
            return {k: f[k] for k in KEYS}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as .npz ({exc})", fix="give a file written by numpy.savez") from exc


def fashion_mnist(cfg: DataConfig, base: Path) -> tuple[Raw, str]:
    """The full set from ``data.path`` or the Debian package; else the bundled subset (said in the report)."""
    if cfg.path is not None:
        return load_mnist_dir(cfg.path if cfg.path.is_absolute() else base / cfg.path), f"fashion-mnist ({cfg.path})"
    if not cfg.subset and FASHION_MNIST_SYSTEM.is_dir():
        return load_mnist_dir(FASHION_MNIST_SYSTEM), f"fashion-mnist full set ({FASHION_MNIST_SYSTEM})"
    if not FASHION_MNIST_SUBSET.is_file():
        raise DataError(
            f"Fashion-MNIST not found: no {FASHION_MNIST_SYSTEM} and no bundled {FASHION_MNIST_SUBSET}",
            fix="apt-get install dataset-fashion-mnist, or set data.path to a folder of the IDX files",
        )
    why = "data.subset is true" if cfg.subset else f"{FASHION_MNIST_SYSTEM} not installed"
    return _npz(FASHION_MNIST_SUBSET), f"fashion-mnist bundled subset ({why})"


def npz(cfg: DataConfig, base: Path) -> tuple[Raw, str]:
    assert cfg.path is not None
    path = cfg.path if cfg.path.is_absolute() else base / cfg.path
    return _npz(path, unlabelled_ok=cfg.labels == "teacher"), f"npz ({path})"


def image_folder(cfg: DataConfig, base: Path) -> tuple[Raw, str]:
    """``path/{train,test}/<class>/*.png|jpg``; classes sorted by name; images resized to input_shape."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise DataError("image-folder needs Pillow", fix="pip install pillow") from exc
    assert cfg.path is not None
    root = cfg.path if cfg.path.is_absolute() else base / cfg.path
    c, h, w = cfg.input_shape
    out: Raw = {}
    classes: list[str] | None = None
    unreadable: list[str] = []
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(
                f"{root}: no '{split}' folder",
                fix="lay images out as <path>/train/<class>/*.png and <path>/test/<class>/*.png",
            )
    for split in ("train", "test"):
        d = root / split
        names = sorted(p.name for p in d.iterdir() if p.is_dir())
        classes = classes or names
        if names != classes:
            raise DataError(
                f"{root}: train and test hold different class folders", fix="use the same class folder names"
            )
        xs, ys = [], []
        for label, cls in enumerate(classes):
            for f in sorted((d / cls).iterdir()):
                if f.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
                    continue
                try:
                    with Image.open(f) as opened:
                        img = opened.convert("L" if c == 1 else "RGB").resize((w, h))
                except (OSError, ValueError, SyntaxError) as exc:  # truncated, not an image, corrupt header
                    unreadable.append(f"{f}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
                    continue
                a = np.asarray(img, dtype=np.uint8)
                xs.append(a[None] if c == 1 else a.transpose(2, 0, 1))
                ys.append(label)
        if not xs:
            bad = [u for u in unreadable if u.startswith(str(d))]
            if bad:
                raise DataError(
                    f"{d}: none of its {len(bad)} image file(s) can be read (first: {bad[0]})",
                    fix="replace or remove the broken files (PIL cannot open them)",
                )
            raise DataError(f"{d}: no images found", fix="add .png/.jpg files under one folder per class")
        out[f"x_{split}"], out[f"y_{split}"] = np.stack(xs), np.asarray(ys, dtype=np.int64)
    out["classes"] = np.asarray(classes or [])
    out["unreadable"] = np.asarray(unreadable, dtype=str)
    return out, f"image-folder ({root}, classes: {', '.join(classes or [])})"


def from_callable(cfg: DataConfig, base: Path) -> tuple[Raw, str]:
    """Import ``module:function`` (named explicitly in model.yaml) and call it: it returns the four arrays."""
    assert cfg.callable is not None
    module_name, _, func_name = cfg.callable.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise DataError(
            f"data.callable: cannot import {cfg.callable!r} ({exc})",
            fix="make the module importable (PYTHONPATH) and check the function name",
        ) from exc
    raw = fn()
    if not isinstance(raw, dict) or any(k not in raw for k in KEYS):
        raise DataError(
            f"data.callable: {cfg.callable} must return a dict with {', '.join(KEYS)}",
            fix="return numpy arrays under those keys",
        )
    return {k: np.asarray(raw[k]) for k in KEYS}, f"callable {cfg.callable} (imported as named in model.yaml)"


SOURCES: dict[str, Callable[[DataConfig, Path], tuple[Raw, str]]] = {
    "fashion-mnist": fashion_mnist,
    "npz": npz,
    "image-folder": image_folder,
    "callable": from_callable,
}
