"""Optional dependencies: import one, or fail with a BackendUnavailable that says what is missing and the fix."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgekd.core.errors import BackendUnavailable


def require(module: str, message: str, fix: str) -> ModuleType:
    """``module`` (a dotted name: ``from a import b`` is ``require("a.b", ...)``), or BackendUnavailable
    ``"<message> (<the import error>)"`` with ``fix``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"{message} ({exc})", fix=fix) from exc
