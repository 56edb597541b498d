"""Load the data a compile needs: train / val / test / calibration splits, checked and normalised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgekd.config.model import CalibrationConfig, DataConfig
from edgekd.core.errors import DataError
from edgekd.data.dataset import DataBundle, Split
from edgekd.data.preprocessing import describe_preprocessing
from edgekd.data.sources import FASHION_MNIST_NORMALIZE, KEYS, LISTINGS, SOURCES, Raw, decode_listing, readable_listing
from edgekd.data.stream import ImageFiles, decode, to_float
from edgekd.data.text import TextModel, load_text

__all__ = ["DataBundle", "Split", "TextModel", "load_data"]

#: data.stream auto streams an image source whose decoded float32 images would take more than this
STREAM_ABOVE_BYTES = 2 * 2**30
#: how many training images a streamed source decodes to compute data.normalize when it is not given
NORMALIZE_SAMPLE = 1000


def _check(raw: Raw, cfg: DataConfig, origin: str) -> None:
    for split in ("train", "test"):
        x, y = raw[f"x_{split}"], raw[f"y_{split}"]
        if len(x) == 0:
            raise DataError(
                f"{origin}: the {split} split has zero samples", fix="point data.path at a non-empty data set"
            )
        if len(x) != len(y):
            raise DataError(
                f"{origin}: {split} has {len(x)} images but {len(y)} labels", fix="give one label per image"
            )
        paths = x.dtype.kind in "UO"  # streamed: file paths, brought to input_shape when decoded
        if not paths and x.ndim == 3:
            raw[f"x_{split}"] = x = x[:, None]
        if not paths and tuple(x.shape[1:]) != tuple(cfg.input_shape):
            raise DataError(
                f"{origin}: {split} images have shape {list(x.shape[1:])} "
                f"but data.input_shape is {list(cfg.input_shape)}",
                fix="set data.input_shape to the images' (C, H, W) or resize the data",
            )
        if cfg.labels == "teacher":
            continue  # the teacher labels every split (DataBundle.label_with)
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{origin}: {split} labels are {y.dtype}, not integers", fix="store class indices 0..K-1")
        if y.min() < 0 or y.max() >= cfg.num_classes:
            raise DataError(
                f"{origin}: {split} labels range over {int(y.min())}..{int(y.max())} "
                f"but data.num_classes is {cfg.num_classes}",
                fix="set data.num_classes to the number of classes, labels 0..num_classes-1",
            )


def load_data(
    cfg: DataConfig, calibration: CalibrationConfig, base_dir, seed: int = 0, text: TextModel | None = None
) -> DataBundle:
    """The splits of ``cfg``; text data (``source: text``) is tokenized for the text teacher ``text``."""
    if cfg.source == "text":
        if text is None:
            raise DataError("data.source text needs a text teacher", fix="set teacher.arch hf and teacher.path")
        return load_text(cfg, calibration, base_dir, seed, text)
    if cfg.source in LISTINGS:
        raw, origin, streamed = _images(cfg, Path(base_dir))
    else:
        (raw, origin), streamed = SOURCES[cfg.source](cfg, base_dir), False
    classes = [str(c) for c in raw["classes"]] if "classes" in raw else None
    unreadable = [str(u) for u in raw.get("unreadable", [])]
    raw = {k: raw[k] for k in KEYS}
    _check(raw, cfg, origin)
    notes = []
    if unreadable:
        notes.append(
            f"data: {len(unreadable)} image file(s) could not be read and were skipped (first: {unreadable[0]})"
        )
    if cfg.normalize is not None:
        mean, std = cfg.normalize.mean, cfg.normalize.std
    elif cfg.source == "fashion-mnist":
        mean, std = FASHION_MNIST_NORMALIZE
    else:
        pixels, sampled = raw["x_train"], ""
        if streamed:  # a seeded sample of the training files, decoded once
            pick = np.random.default_rng(seed).permutation(len(pixels))[:NORMALIZE_SAMPLE]
            pixels = np.stack([decode(Path(p), cfg.input_shape, cfg.resize) for p in pixels[np.sort(pick)]])
            sampled = f" ({len(pick)} images drawn with data seed {seed})"
        x = pixels.astype(np.float32) / (255.0 if pixels.dtype == np.uint8 else 1.0)
        mean = [float(v) for v in x.mean(axis=(0, 2, 3))]
        std = [float(v) or 1.0 for v in x.std(axis=(0, 2, 3))]
        notes.append(f"data.normalize not given: computed from the training split{sampled} (mean {mean}, std {std})")
    if len(mean) != cfg.input_shape[0]:
        raise DataError(
            f"data.normalize has {len(mean)} values but the images have {cfg.input_shape[0]} channel(s)",
            fix="give one mean and one std per channel",
        )

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(raw["y_train"]))
    n_val = round(len(order) * cfg.val_fraction)
    val_idx, train_idx = order[:n_val], order[n_val:]
    if cfg.train_limit:
        train_idx = train_idx[: cfg.train_limit]
    x_test, y_test = raw["x_test"], raw["y_test"]
    if cfg.test_limit:
        x_test, y_test = x_test[: cfg.test_limit], y_test[: cfg.test_limit]
    calib_pool = {"train": len(train_idx), "val": len(val_idx)}.get(calibration.source)
    if calib_pool is not None and calibration.samples > calib_pool:
        raise DataError(
            f"calibration.samples is {calibration.samples} but the "
            f"{'training' if calibration.source == 'train' else calibration.source} split holds only "
            f"{calib_pool} images",
            fix=f"set calibration.samples to at most {calib_pool}",
        )

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        labels = torch.from_numpy(y.astype(np.int64))
        if streamed:
            return Split(ImageFiles([Path(p) for p in x], cfg.input_shape, mean, std, cfg.workers, cfg.resize), labels)
        return Split(to_float(x, mean, std), labels)

    if "subset" in origin:
        notes.append(
            f"data: {origin}; accuracies are on {len(y_test)} test images of the subset, not the full test set"
        )
    elif cfg.test_limit:
        notes.append(f"data: accuracies are on the first {len(y_test)} test images (data.test_limit)")
    # labels: teacher labels every split alike (given labels, e.g. an image folder's index, are not used), so
    # every accuracy is agreement with the teacher
    unlabelled = cfg.labels == "teacher" or bool(len(raw["y_train"]) and (raw["y_train"] == -1).all())
    if unlabelled:
        notes.append(
            "data: labels: teacher: the teacher's predictions label the training, validation and test images; "
            "every accuracy reported is top-1 agreement with the teacher"
        )
    train = split(raw["x_train"][train_idx], raw["y_train"][train_idx])
    val = split(raw["x_train"][val_idx], raw["y_train"][val_idx])
    return DataBundle(
        unlabelled=unlabelled,
        train=train,
        val=val,
        test=split(x_test, y_test),
        calibration=_calibration(calibration, train, val, base_dir, cfg, mean, std),
        num_classes=cfg.num_classes,
        input_shape=tuple(cfg.input_shape),  # type: ignore[arg-type]
        mean=list(mean),
        std=list(std),
        source=origin,
        notes=notes,
        preprocessing=describe_preprocessing(
            cfg, np.dtype(np.uint8) if streamed else raw["x_train"].dtype, list(mean), list(std), classes, unlabelled
        ),
        streamed=streamed,
    )


def _images(cfg: DataConfig, base: Path) -> tuple[Raw, str, bool]:
    """An image folder or file list: decoded into memory, or (``data.stream``; auto: when the decoded float32
    images would pass :data:`STREAM_ABOVE_BYTES`) listed, with the files PIL cannot open left out, and the
    paths standing in for the images."""
    listing = LISTINGS[cfg.source](cfg, base)
    n = sum(len(files) for files in listing.splits.values())
    decoded_bytes = n * int(np.prod(cfg.input_shape)) * 4
    streamed = cfg.stream is True or (cfg.stream == "auto" and decoded_bytes > STREAM_ABOVE_BYTES)
    if not streamed:
        raw, origin = decode_listing(listing, cfg)
        return raw, origin, False
    listing, unreadable = readable_listing(listing, cfg)
    raw: Raw = {"unreadable": np.asarray(unreadable, dtype=str)}
    if listing.classes:
        raw["classes"] = np.asarray(listing.classes)
    for split, files in listing.splits.items():
        raw[f"x_{split}"] = np.asarray([str(f) for f, _ in files])
        raw[f"y_{split}"] = np.asarray([label for _, label in files], dtype=np.int64)
    why = "data.stream: true" if cfg.stream is True else f"decoded they would take {decoded_bytes / 2**30:.1f} GiB"
    return raw, f"{listing.origin}; streamed from disk ({why}, {cfg.workers} decoding workers)", True


def _calibration(
    c: CalibrationConfig, train: Split, val: Split, base_dir, cfg: DataConfig, mean: list[float], std: list[float]
) -> Split:
    """The calibration images: the first ``samples`` of the train or val split, or of the user's .npz (array 'x')."""
    if c.source == "train":
        return train.take(c.samples)
    if c.source == "val":
        return val.take(c.samples)
    from pathlib import Path

    assert c.path is not None
    path = c.path if c.path.is_absolute() else Path(base_dir) / c.path
    try:
        with np.load(path) as f:
            x = f["x"][: c.samples]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(
            f"calibration.path {path}: cannot read an array 'x' ({exc})",
            fix="np.savez(path, x=images) with images shaped (N, C, H, W) like the training data",
        ) from exc
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(cfg.input_shape) or len(x) == 0:
        raise DataError(
            f"calibration.path {path}: images of shape {list(x.shape)}, expected [N, "
            f"{', '.join(map(str, cfg.input_shape))}]",
            fix="give images preprocessed like the training data (same channels and size)",
        )
    return Split(to_float(x, mean, std), torch.zeros(len(x), dtype=torch.int64))
