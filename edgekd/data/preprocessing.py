"""What a deployed model expects of its input: the preprocessing the compile trained and measured with.

Recorded in ``result.json`` (``data.preprocessing``) and shipped with every model file (ONNX ``metadata_props``
key :data:`METADATA_KEY`; a ``<file>.preprocessing.json`` sidecar next to ``.tflite`` files and engines), so
whoever deploys feeds the model exactly what it was compiled for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekd.config.model import DataConfig

METADATA_KEY = "edgekd.preprocessing"
FORMAT = "edgekd-preprocessing"
VERSION = 1


def describe_preprocessing(
    cfg: DataConfig,
    raw_dtype: np.dtype,
    mean: list[float],
    std: list[float],
    classes: list[str] | None = None,
    teacher_labels: bool = False,
) -> dict[str, Any]:
    """The input contract of the compiled models for data read as ``cfg`` says (``raw_dtype``: the source's
    pixel type; ``classes``: class names in label order, where the source has them)."""
    c, h, w = cfg.input_shape
    pixels = "uint8 in 0..255, divided by 255" if np.issubdtype(raw_dtype, np.integer) else "float in [0, 1] as given"
    resize = None
    if cfg.source in ("image-folder", "image-list") and cfg.resize is None:
        resize = {"size": [h, w], "method": "PIL Image.resize (bicubic), aspect ratio not kept", "crop": None}
    elif cfg.source in ("image-folder", "image-list"):
        resize = {
            "shorter_side": cfg.resize,
            "method": "PIL Image.resize (bicubic), aspect ratio kept",
            "crop": {"center": [h, w]},
        }
    return {
        "format": FORMAT,
        "version": VERSION,
        "input": {"layout": "NCHW", "shape": [c, h, w], "dtype": "float32", "color": "gray" if c == 1 else "RGB"},
        "pixels": pixels,
        "resize": resize,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "formula": "x[c] = (pixel[c] / 255 - mean[c]) / std[c]"
        if np.issubdtype(raw_dtype, np.integer)
        else "x[c] = (pixel[c] - mean[c]) / std[c]",
        "output": {"logits": cfg.num_classes, "classes": classes},
        "labels": "the teacher's predictions" if teacher_labels else "given",
    }
