"""The text benchmark's configs and report (benchmarks/text_minilm.py) without training: every ablation variant
is a valid compile of the real example, and the report's goals are read from the figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import text_minilm as tm

from edgekd.api import load_model_config


@pytest.mark.parametrize("variant", list(tm.VARIANTS))
def test_every_ablation_variant_is_a_valid_config_of_the_example(variant):
    cfg = load_model_config(tm.EXAMPLE / "model.yaml", tm._overrides(variant, 1))
    assert cfg.seed == 1 and [p.name for p in cfg.passes] == ["distill", "lower"]
    distill = cfg.passes[0].config
    assert distill.epochs == 3 and set(distill.loss) == set(tm.VARIANTS[variant]["loss"])
    assert cfg.data.labels == ("teacher" if variant == "teacher_labels" else "given")
    inherited = variant in ("kd_minilm_inherit", "teacher_labels", "kd_minilm_inherit_mask")
    assert cfg.student.arch == ("shrink" if inherited else "hf")
    assert cfg.student.params.get("inherit", True) is inherited
    masked = getattr(distill.augment, "mask", None)
    assert masked == (0.1 if variant.endswith("_mask") else None)


def test_the_example_distils_two_of_six_layers_with_minilm_on_the_last_attention():
    cfg = load_model_config(tm.EXAMPLE / "model.yaml")
    assert cfg.student.params == {"layers": 2, "keep": "every_other"}
    minilm = cfg.passes[0].config.loss["minilm"]["pairs"]
    assert minilm == [{"student": tm.STUDENT_ATTN, "teacher": tm.TEACHER_ATTN}]


def _main_doc(acc: dict[str, float], speedup: float, vs_teacher: float) -> dict:
    at64 = {"int8_dynamic_speedup_vs_student_fp32": speedup, "student_int8_dynamic_vs_teacher_fp32": vs_teacher}
    one = {"int8_dynamic_speedup_vs_student_fp32": 2.2, "student_int8_dynamic_vs_teacher_fp32": 6.5}
    return {
        "test_accuracy_onnxruntime": acc,
        "latency_by_sequence_length": {"64": at64},
        "latency_1_thread_by_sequence_length": {"64": one},
    }


def test_report_reads_goals_and_seed_spread_from_the_run_files(tmp_path, monkeypatch):
    monkeypatch.setattr(tm, "RESULTS", tmp_path)
    monkeypatch.setattr(tm, "OUT", tmp_path / "out.json")
    acc = {"teacher_fp32": 82.0, "student_fp32": 80.0, "student_int8_dynamic": 78.5, "student_int8_static": 79.0}
    (tmp_path / "main-seed0.json").write_text(json.dumps(_main_doc(acc, 2.1, 5.0)))
    (tmp_path / "ablation").mkdir()
    for seed, value in enumerate([70.0, 72.0, 74.0]):
        doc = {"variant": "kd", "seed": seed, "test_accuracy": value, "val_accuracy": value + 1,
               "train_samples": 10, "labels": "given"}  # fmt: skip
        (tmp_path / "ablation" / f"kd-seed{seed}.json").write_text(json.dumps(doc))
    tm.report(None)
    out = json.loads((tmp_path / "out.json").read_text())
    goals = out["goals"]
    assert goals["student_fp32_keeps_97pct_of_teacher"] == {"value": 97.6, "goal": goals[
        "student_fp32_keeps_97pct_of_teacher"]["goal"], "met": True}  # fmt: skip
    assert goals["int8_dynamic_speedup_at_64_tokens"]["met"] is True
    assert goals["int8_dynamic_accuracy_drop_points"]["value"] == 1.5
    assert goals["int8_dynamic_accuracy_drop_points"]["met"] is False
    assert goals["student_int8_vs_teacher_fp32_at_64_tokens"]["met"] is False  # judged at the target's threads
    assert goals["student_int8_vs_teacher_fp32_at_64_tokens"]["value_1_thread"] == 6.5  # beside it, not instead
    kd = out["ablation"]["kd"]["test_accuracy"]
    assert kd["mean"] == 72.0 and kd["std"] == 2.0 and kd["n"] == 3
