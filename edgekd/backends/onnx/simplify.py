"""Simplify an exported ONNX graph: constant folding and dead-node removal (onnxscript's optimizer).

The result replaces the exported file only if ``onnx.checker`` accepts it; the lower pass then checks its parity
against the PyTorch model like any other artifact, so a simplification that changed the numbers cannot pass.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import onnx

from edgekd.core.artifacts import atomic_write_bytes
from edgekd.core.errors import ExportError


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def simplify_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the simplified ``src`` to ``dst``; returns node counts before/after and the operator histogram."""
    try:
        import onnxscript.optimizer as optimizer
    except ImportError as exc:  # onnxscript is a core dependency; an old install may lack it
        raise ExportError(
            f"onnxscript's optimizer is not importable ({exc})", fix="pip install 'onnxscript>=0.5'"
        ) from exc
    model = onnx.load(str(src))
    before = len(model.graph.node)
    try:
        simplified = optimizer.optimize(model)
        onnx.checker.check_model(simplified, full_check=True)
    except Exception as exc:
        raise ExportError(
            f"simplifying {src} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            fix="set lower.simplify: false in model.yaml",
        ) from exc
    atomic_write_bytes(dst, simplified.SerializeToString())
    return {
        "nodes_before": before,
        "nodes_after": len(simplified.graph.node),
        "operators": op_counts(simplified),
        "method": "onnxscript.optimizer.optimize (constant folding, dead-node removal)",
    }
