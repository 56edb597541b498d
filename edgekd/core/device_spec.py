"""The form of model.yaml's ``device`` value (no torch here: validating a config imports no torch)."""

from __future__ import annotations

PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
