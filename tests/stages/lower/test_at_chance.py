"""A student at chance under a teacher far above it stops the compile before its files are called deployable
(before: it passed parity, since its files match it exactly, and was shipped)."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgekd
from edgekd.core.errors import ModelError
from tests.helpers import tiny_config, trained_tiny_teacher, write_config


def _config(tmp_path: Path, lower: dict) -> Path:
    trained_tiny_teacher(tmp_path)  # ~60-70% on the subset: far above the 10% of chance
    # an untrained student (no distill pass): what an empty label column or a broken normalisation leaves
    cfg = tiny_config(tmp_path, passes=[{"lower": {"parity": {"samples": 32}, **lower}}, {"report": {}}])
    return write_config(tmp_path, cfg)


def test_a_student_at_chance_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"validation accuracy is .*chance level for 10 classes \(10.00%\)") as err:
        edgekd.compile(_config(tmp_path, {}), out=tmp_path / "runs", quiet=True)
    assert "distill.epochs" in (err.value.fix or "") and "refuse_chance: false" in (err.value.fix or "")


def test_the_refusal_can_be_turned_off(tmp_path: Path) -> None:
    res = edgekd.compile(_config(tmp_path, {"refuse_chance": False}), out=tmp_path / "runs", quiet=True)
    assert res.artifacts["onnx"].is_file()
