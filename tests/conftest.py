"""Shared fixtures (helpers live in tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import tiny_config, write_config


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Path of a valid tiny model.yaml in a temp folder."""
    return write_config(tmp_path, tiny_config(tmp_path))
