"""lower fails loudly when an export does not reproduce the student, and leaves no complete-looking run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edgekd
import edgekd.backends.onnx.lower as onnx_lower
from edgekd.backends.onnx.lower import export_onnx
from edgekd.core.errors import ParityError


def _broken_export(*args: object, **kwargs: object) -> Path:
    """The real exporter, then one weight tensor scaled: a silent export bug."""
    path = export_onnx(*args, **kwargs)  # type: ignore[arg-type]
    model = onnx.load(str(path))
    init = next(t for t in model.graph.initializer if numpy_helper.to_array(t).ndim == 4)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.5), init.name))
    onnx.save(model, str(path))
    return path


def test_broken_export_fails_parity_and_the_run_is_not_complete(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_lower, "export_onnx", _broken_export)
    with pytest.raises(ParityError, match=r"student.onnx does not match the PyTorch model \(exact parity") as info:
        edgekd.compile(tiny, out=tmp_path / "runs", quiet=True)
    assert "max abs diff" in str(info.value) or "max_abs_diff" in str(info.value)
    run = next((tmp_path / "runs").glob("tiny-*"))
    assert not (run / "result.json").exists() and not (run / "report.md").exists()
    assert '"event": "pass_failed"' in (run / "events.jsonl").read_text()
