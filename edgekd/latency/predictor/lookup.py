"""Where a target's latency predictor file is, and loading it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgekd.latency.predictor.model import LatencyPredictor


def default_path(target_file: str | os.PathLike[str] | None, name: str) -> Path:
    """Where a target's predictor lives by default: ``<target file stem>.predictor.json`` beside the target file."""
    if target_file is None:
        return Path("targets") / f"{name}.predictor.json"
    p = Path(target_file)
    return p.with_name(f"{p.stem}.predictor.json")


def predictor_path(target: Any) -> Path:
    """The predictor file of ``target`` (a TargetConfig): its ``predictor:`` key (relative to the target file) or
    the default beside the target file."""
    if target.predictor:
        p = Path(os.path.expanduser(target.predictor))
        if not p.is_absolute() and target.source_file is not None:
            p = Path(target.source_file).parent / p
        return p
    return default_path(target.source_file, target.name)


def load_for_target(target: Any) -> LatencyPredictor | None:
    """The target's predictor, or None when it has none (a file named by ``predictor:`` must exist)."""
    path = predictor_path(target)
    if not path.is_file() and not target.predictor:
        return None
    return LatencyPredictor.load(path)
