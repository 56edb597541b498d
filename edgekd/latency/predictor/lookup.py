"""Where a target's latency predictors are, and loading the one for a kind of file.

A target has one predictor per kind of file it ships (:class:`~edgekd.latency.predictor.files.PredictorKind`):
by default ``<target file stem>.predictor.json`` (fp32 ONNX) and ``<stem>.<kind>.predictor.json`` for the others
(``x86-cpu.onnx-int8.predictor.json``, ``raspberry-pi-4.tflite-int8.predictor.json``) beside the target file. The
target's ``predictor:`` key names one file (of the kind it records) or a mapping from kind to file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgekd.core.errors import ProfilingError
from edgekd.latency.predictor.files import PredictorKind
from edgekd.latency.predictor.model import LatencyPredictor

FP32_ONNX = PredictorKind()


def default_path(target_file: str | os.PathLike[str] | None, name: str, kind: PredictorKind = FP32_ONNX) -> Path:
    """Where a target's predictor of ``kind`` lives by default, beside the target file."""
    infix = "" if kind == FP32_ONNX else f".{kind.key}"
    if target_file is None:
        return Path("targets") / f"{name}{infix}.predictor.json"
    p = Path(target_file)
    return p.with_name(f"{p.stem}{infix}.predictor.json")


def _resolve(target: Any, text: str) -> Path:
    p = Path(os.path.expanduser(text))
    if not p.is_absolute() and target.source_file is not None:
        p = Path(target.source_file).parent / p
    return p


def predictor_path(target: Any, kind: PredictorKind = FP32_ONNX) -> Path:
    """The predictor file of ``target`` (a TargetConfig) for ``kind``: named by its ``predictor:`` key (a file,
    or the mapping's entry for the kind; relative to the target file), else the default beside the target file."""
    named = target.predictor
    if isinstance(named, dict) and kind.key in named:
        return _resolve(target, named[kind.key])
    if isinstance(named, str):
        return _resolve(target, named)
    return default_path(target.source_file, target.name, kind)


def named_explicitly(target: Any, kind: PredictorKind) -> bool:
    named = target.predictor
    return isinstance(named, str) or (isinstance(named, dict) and kind.key in named)


def load_for_target(target: Any, kind: PredictorKind = FP32_ONNX) -> LatencyPredictor | None:
    """The target's predictor for ``kind``, or None when it has none (a file the target names for that kind must
    exist; a single named file of another kind is no predictor of this one)."""
    path = predictor_path(target, kind)
    explicit = named_explicitly(target, kind)
    if not path.is_file() and not explicit:
        return None
    pred = LatencyPredictor.load(path)
    if pred.kind == kind:
        return pred
    if isinstance(target.predictor, dict):
        raise ProfilingError(
            f"target {target.name}: predictor.{kind.key} is {path}, a {pred.kind.key} predictor",
            fix=f"point predictor.{kind.key} at a {kind.key} predictor file (edgekd profile --build-predictor "
            f"--target {target.name} --precision {kind.precision})",
        )
    return None
