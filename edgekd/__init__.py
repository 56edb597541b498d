"""edgekd: teacher-aware compression of PyTorch models for edge targets.

import edgekd
result = edgekd.compile("model.yaml", target="x86-cpu")

The API (:mod:`edgekd.api`) is imported on first use, so ``import edgekd.config`` (validating a config) loads no
pass, no torch and no backend.
"""

from typing import Any

from edgekd._version import __version__
from edgekd.core.errors import EdgekdError

_API = (
    "CompileResult",
    "compile",
    "init",
    "latency_report",
    "predict",
    "profile",
    "report",
    "score",
    "search",
    "targets",
)


def __getattr__(name: str) -> Any:
    if name in _API:
        from edgekd import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgekd' has no attribute {name!r}")


__all__ = ["EdgekdError", "__version__", *_API]
