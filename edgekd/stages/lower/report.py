"""The lower pass's sections of the report: each backend's own (TFLite settings, TensorRT build commands)."""

from __future__ import annotations

from typing import Any

from edgekd.backends.base import BACKENDS, load_function
from edgekd.document.model import Section


def lower_sections(low: dict[str, Any]) -> list[Section]:
    """Every backend's section of the lower summary, in the backend table's order."""
    return [s for b in BACKENDS.values() if b.report for s in load_function(b.report)(low)]
