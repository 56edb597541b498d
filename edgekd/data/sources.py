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


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _read_images(
    files: list[tuple[Path, int]], cfg: DataConfig, unreadable: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``files`` ((path, label) pairs) resized to ``cfg.input_shape``: (N, C, H, W) uint8 and labels. A file
    PIL cannot read is skipped and recorded in ``unreadable``."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise DataError(f"data.source {cfg.source} needs Pillow", fix="pip install pillow") from exc
    c, h, w = cfg.input_shape
    xs, ys = [], []
    for f, label in files:
        try:
            with Image.open(f) as opened:
                img = opened.convert("L" if c == 1 else "RGB").resize((w, h))
        except (OSError, ValueError, SyntaxError) as exc:  # missing, truncated, not an image, corrupt header
            unreadable.append(f"{f}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        a = np.asarray(img, dtype=np.uint8)
        xs.append(a[None] if c == 1 else a.transpose(2, 0, 1))
        ys.append(label)
    if not xs:
        return np.zeros((0, c, h, w), np.uint8), np.zeros(0, np.int64)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _none_readable(where: Path, files: int, bad: list[str], fix_empty: str) -> DataError:
    """The error for a split without one readable image: ``bad`` its unreadable files, of ``files`` listed."""
    if bad:
        return DataError(
            f"{where}: none of its {files} image file(s) can be read (first: {bad[0]})",
            fix="replace or remove the broken files (PIL cannot open them)",
        )
    return DataError(f"{where}: no images found", fix=fix_empty)


def image_folder(cfg: DataConfig, base: Path) -> tuple[Raw, str]:
    """``path/train/<class>/*`` and ``path/test/<class>/*`` or, ImageNet-style, ``path/val/<class>/*`` as the test
    split (where there is no ``test/``); classes sorted by folder name; images resized to input_shape."""
    assert cfg.path is not None
    root = cfg.path if cfg.path.is_absolute() else base / cfg.path
    held_out = "test" if (root / "test").is_dir() or not (root / "val").is_dir() else "val"
    for split in ("train", held_out):
        if not (root / split).is_dir():
            raise DataError(
                f"{root}: no '{split}' folder",
                fix="lay images out as <path>/train/<class>/*.png and <path>/test/<class>/*.png "
                "(or ImageNet-style <path>/val/<class>/*.JPEG as the test split)",
            )
    out: Raw = {}
    classes: list[str] | None = None
    unreadable: list[str] = []
    for split, folder in (("train", "train"), ("test", held_out)):
        d = root / folder
        names = sorted(p.name for p in d.iterdir() if p.is_dir())
        classes = classes or names
        if names != classes:
            raise DataError(
                f"{root}: train and {folder} hold different class folders", fix="use the same class folder names"
            )
        files = [
            (f, label)
            for label, cls in enumerate(classes)
            for f in sorted((d / cls).iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        ]
        before = len(unreadable)
        x, y = _read_images(files, cfg, unreadable)
        if not len(x):
            raise _none_readable(d, len(files), unreadable[before:], "add .png/.jpg files under one folder per class")
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    out["classes"] = np.asarray(classes or [])
    out["unreadable"] = np.asarray(unreadable, dtype=str)
    layout = "" if held_out == "test" else ", ImageNet-style: val/ is the test split"
    return out, f"image-folder ({root}{layout}, classes: {', '.join(classes or [])})"


def image_list(cfg: DataConfig, base: Path) -> tuple[Raw, str]:
    """A CSV file list: columns ``path`` (relative to the CSV's folder, or absolute), ``split`` (``train`` or
    ``test``) and ``label`` (a class name or index; empty everywhere with ``data.labels: teacher``). Class names
    are sorted; labels that are all integers are class indices."""
    import csv

    assert cfg.path is not None
    path = cfg.path if cfg.path.is_absolute() else base / cfg.path
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [k for k in ("path", "split", "label") if k not in (reader.fieldnames or [])]
            if missing:
                raise DataError(
                    f"{path}: no column(s) {', '.join(missing)} (has {', '.join(reader.fieldnames or []) or 'none'})",
                    fix="give a header row path,split,label (label may be empty with data.labels: teacher)",
                )
            rows = [
                (i + 2, r["path"].strip(), r["split"].strip(), (r["label"] or "").strip()) for i, r in enumerate(reader)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read as a CSV file list ({exc})", fix="give a UTF-8 CSV file") from exc
    for line, file, split, _ in rows:
        if split not in ("train", "test"):
            raise DataError(
                f"{path}, line {line}: split {split!r} for {file}",
                fix="use split train or test (the validation share is held out of train by data.val_fraction)",
            )
    labels = {label for *_, label in rows}
    unlabelled = cfg.labels == "teacher"
    if not unlabelled and "" in labels:
        line = next(n for n, *_, label in rows if label == "")
        raise DataError(f"{path}, line {line}: no label", fix="give every row a label, or set data.labels: teacher")
    numeric = all(label.lstrip("-").isdigit() for label in labels if label)
    classes = [] if unlabelled or numeric else sorted(labels)
    index = {name: i for i, name in enumerate(classes)}

    def label_of(label: str) -> int:
        return -1 if unlabelled else int(label) if numeric else index[label]

    out: Raw = {}
    unreadable: list[str] = []
    for split in ("train", "test"):
        files = [
            (Path(file) if Path(file).is_absolute() else path.parent / file, label_of(label))
            for _, file, s, label in rows
            if s == split
        ]
        before = len(unreadable)
        x, y = _read_images(files, cfg, unreadable)
        if not len(x):
            raise _none_readable(path, len(files), unreadable[before:], f"list {split} images in {path} (split column)")
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    if classes:
        out["classes"] = np.asarray(classes)
    out["unreadable"] = np.asarray(unreadable, dtype=str)
    return out, f"image-list ({path}{', classes: ' + ', '.join(classes) if classes else ''})"


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
    "image-list": image_list,
    "callable": from_callable,
}
