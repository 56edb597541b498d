"""The per-layer precision table says when it leaves an artifact out, instead of dropping it silently."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from edgekd.pipeline.context import Artifact
from edgekd.stages.report.result import _precision


def test_an_unreadable_graph_is_named_in_the_notes(tmp_path: Path) -> None:
    (tmp_path / "student.int8.onnx").write_bytes(b"not an onnx file")
    art = Artifact("onnx_int8", "student.int8.onnx", "0" * 64, 16, "onnx", precision="int8")
    ctx = SimpleNamespace(artifacts={art.name: art}, path_of=lambda name: tmp_path / art.path)
    notes: list[str] = []
    assert _precision(ctx, notes) == {}  # type: ignore[arg-type]
    assert len(notes) == 1 and notes[0].startswith("per-layer precision of student.int8.onnx not tabulated")
