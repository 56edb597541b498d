"""edgekd: teacher-aware compression of PyTorch models for edge targets.

import edgekd
result = edgekd.compile("model.yaml", target="x86-cpu")
"""

from edgekd._version import __version__
from edgekd.api import CompileResult, compile, profile, report, targets
from edgekd.errors import EdgekdError

__all__ = ["CompileResult", "EdgekdError", "__version__", "compile", "profile", "report", "targets"]
