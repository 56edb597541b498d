"""The report says which split the accuracy guard's reference came from, and whether the teacher is known not to
have trained on it (its record next to the checkpoint names the held-out split by sha256). Before, the guard's
split was not named and a teacher trained on it went unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

import edgekd
from edgekd.compiler.plan import load_model_config
from edgekd.data import load_data
from tests.helpers import tiny_config, write_config

PASSES = [{"lower": {"parity": {"samples": 16, "min_top1": 1.0, "min_cosine": 0.01}}}, {"report": {}}]


def _compile(tmp_path: Path, record: dict | None) -> edgekd.api.CompileResult:
    path = write_config(tmp_path, tiny_config(tmp_path, passes=PASSES, constraints={"max_accuracy_drop": 100}))
    if record is not None:
        (tmp_path / "teacher.json").write_text(json.dumps(record))
    return edgekd.compile(path, out=tmp_path / "runs", quiet=True)


def _val_sha(tmp_path: Path) -> str:
    cfg = load_model_config(write_config(tmp_path, tiny_config(tmp_path, passes=PASSES)))
    return load_data(cfg.data, cfg.calibration, cfg.base_dir, cfg.seed).val.sha256()


def test_a_teacher_record_holding_out_this_split_is_named_in_the_report(tmp_path: Path) -> None:
    res = _compile(tmp_path, {"held_out": {"split": "val", "sha256": _val_sha(tmp_path)}})
    split = res.result["teacher"]["val_split"]
    assert split["held_out_by_teacher"] is True and split["images"] == 500 and split["seed"] == 0
    report = res.report_path.read_text()
    assert "the passes' accuracy guard compared validation accuracy: 500 images held out" in report
    assert "says it never trained on these images" in report


def test_a_teacher_record_naming_another_split_is_a_warning(tmp_path: Path) -> None:
    res = _compile(tmp_path, {"held_out": {"split": "val", "sha256": "0" * 64}})
    assert res.result["teacher"]["val_split"]["held_out_by_teacher"] is False
    assert any("says the teacher was trained without another validation split" in n for n in res.notes)
    assert "names another held-out split" in res.report_path.read_text()


def test_without_a_record_the_report_says_nothing_is_known(tmp_path: Path) -> None:
    res = _compile(tmp_path, None)
    assert res.result["teacher"]["val_split"]["held_out_by_teacher"] is None
    assert "Nothing records whether the teacher trained on them" in res.report_path.read_text()


def test_the_accuracy_constraint_is_judged_on_the_validation_split(tmp_path: Path) -> None:
    """The test split informs but never decides: the final max_accuracy_drop is teacher val - artifact val (before,
    the test split decided whether a compile shipped)."""
    res = _compile(tmp_path, None)
    c = res.result["constraints"]["max_accuracy_drop"]
    art = res.result["artifacts"][c["artifact"]]
    teacher = res.result["teacher"]
    assert c["split"] == "val"
    assert c["value"] == round(teacher["val_accuracy"] - art["accuracy_val"], 3)
    assert c["test_value"] == round(teacher["test_accuracy"] - art["accuracy"], 3)
    assert f"({c['artifact']}, val split; test split {c['test_value']})" in res.report_path.read_text()
