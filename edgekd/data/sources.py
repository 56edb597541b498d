"""Data sources named by ``data.source`` in model.yaml. Each returns raw arrays:

``x_train`` (N, C, H, W, uint8 or float in [0, 1]), ``y_train`` (N, int), ``x_test``, ``y_test``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.config.model import DataConfig
from edgekd.core.errors import DataError
from edgekd.data.idx import load_mnist_dir
from edgekd.data.stream import decode, reason

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


@dataclass
class ImageListing:
    """The image files of a folder or file list, before any is decoded: per split (``train``, ``test``) the
    (path, label) pairs, where each split was found (for errors), the class names in label order, the origin."""

    splits: dict[str, list[tuple[Path, int]]]
    where: dict[str, Path]
    classes: list[str]
    origin: str
    empty_fix: str


def _none_readable(where: Path, files: int, bad: list[str], fix_empty: str) -> DataError:
    """The error for a split without one readable image: ``bad`` its unreadable files, of ``files`` listed."""
    if bad:
        return DataError(
            f"{where}: none of its {files} image file(s) can be read (first: {bad[0]})",
            fix="replace or remove the broken files (PIL cannot open them)",
        )
    return DataError(f"{where}: no images found", fix=fix_empty)


def _pillow(cfg: DataConfig) -> None:
    try:
        import PIL  # noqa: F401
    except ImportError as exc:
        raise DataError(f"data.source {cfg.source} needs Pillow", fix="pip install pillow") from exc


def decode_listing(listing: ImageListing, cfg: DataConfig) -> tuple[Raw, str]:
    """Every image of ``listing`` decoded (resized to ``cfg.input_shape``, uint8 NCHW) into the raw arrays; a file
    PIL cannot read is skipped and named in ``unreadable``."""
    _pillow(cfg)
    out: Raw = {}
    unreadable: list[str] = []
    for split, files in listing.splits.items():
        xs, ys = [], []
        for f, label in files:
            try:
                xs.append(decode(f, cfg.input_shape, cfg.resize))
            except (OSError, ValueError, SyntaxError) as exc:  # missing, truncated, not an image, corrupt header
                unreadable.append(f"{f}: {reason(exc)}")
                continue
            ys.append(label)
        if not xs:
            bad = unreadable[len(unreadable) - len(files) :] if files else []
            raise _none_readable(listing.where[split], len(files), bad, listing.empty_fix)
        out[f"x_{split}"], out[f"y_{split}"] = np.stack(xs), np.asarray(ys, dtype=np.int64)
    if listing.classes:
        out["classes"] = np.asarray(listing.classes)
    out["unreadable"] = np.asarray(unreadable, dtype=str)
    return out, listing.origin


def readable_listing(listing: ImageListing, cfg: DataConfig) -> tuple[ImageListing, list[str]]:
    """``listing`` without the files whose header PIL cannot read (for streaming: nothing is decoded), and those
    files with the reason. A split with no readable file is an error naming one."""
    _pillow(cfg)
    from PIL import Image

    splits: dict[str, list[tuple[Path, int]]] = {}
    unreadable: list[str] = []
    for split, files in listing.splits.items():
        kept, bad = [], []
        for f, label in files:
            try:
                with Image.open(f):
                    pass
            except (OSError, ValueError, SyntaxError) as exc:
                bad.append(f"{f}: {reason(exc)}")
                continue
            kept.append((f, label))
        if not kept:
            raise _none_readable(listing.where[split], len(files), bad, listing.empty_fix)
        splits[split] = kept
        unreadable += bad
    return ImageListing(splits, listing.where, listing.classes, listing.origin, listing.empty_fix), unreadable


def list_image_folder(cfg: DataConfig, base: Path) -> ImageListing:
    """``path/train/<class>/*`` and ``path/test/<class>/*`` or, ImageNet-style, ``path/val/<class>/*`` as the test
    split (where there is no ``test/``); classes sorted by folder name."""
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
    classes: list[str] | None = None
    splits: dict[str, list[tuple[Path, int]]] = {}
    where: dict[str, Path] = {}
    for split, folder in (("train", "train"), ("test", held_out)):
        d = where[split] = root / folder
        names = sorted(p.name for p in d.iterdir() if p.is_dir())
        if not names and cfg.labels == "teacher":  # unlabelled: the images lie in the split folder itself
            splits[split] = [(f, -1) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
            continue
        if not names and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir()):
            raise DataError(
                f"{d}: images but no class folders",
                fix="put each class's images in <split>/<class>/, or set data.labels: teacher for unlabelled images",
            )
        classes = classes or names
        if names != classes:
            raise DataError(
                f"{root}: train and {folder} hold different class folders", fix="use the same class folder names"
            )
        splits[split] = [
            (f, label)
            for label, cls in enumerate(classes)
            for f in sorted((d / cls).iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        ]
    layout = "" if held_out == "test" else ", ImageNet-style: val/ is the test split"
    named = f"classes: {', '.join(classes)}" if classes else "no class folders: unlabelled"
    origin = f"image-folder ({root}{layout}, {named})"
    return ImageListing(splits, where, classes or [], origin, "add .png/.jpg files under one folder per class")


def list_image_list(cfg: DataConfig, base: Path) -> ImageListing:
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

    splits = {
        split: [
            (Path(file) if Path(file).is_absolute() else path.parent / file, label_of(label))
            for _, file, s, label in rows
            if s == split
        ]
        for split in ("train", "test")
    }
    origin = f"image-list ({path}{', classes: ' + ', '.join(classes) if classes else ''})"
    return ImageListing(splits, {"train": path, "test": path}, classes, origin, f"list the images in {path}")


LISTINGS: dict[str, Callable[[DataConfig, Path], ImageListing]] = {
    "image-folder": list_image_folder,
    "image-list": list_image_list,
}


def image_folder(cfg: DataConfig, base: Path) -> tuple[Raw, str]:
    return decode_listing(list_image_folder(cfg, base), cfg)


def image_list(cfg: DataConfig, base: Path) -> tuple[Raw, str]:
    return decode_listing(list_image_list(cfg, base), cfg)


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
