"""benchmarks/byom.py's pure logic, its model.yaml files and its user model (no training, no compile)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import byom

from edgekd.compiler.plan import load_model_config
from edgekd.models.count import count_macs


def test_every_byom_model_yaml_validates_and_names_a_builder_next_to_it(tmp_path: Path) -> None:
    for name in byom.MODELS:  # the teacher checkpoint is written by byom.py itself: validated without it here
        text = (byom.HERE / f"{name}.yaml").read_text()
        assert "checkpoint: ../../runs/bench-byom/" in text
        (tmp_path / f"{name}.yaml").write_text("\n".join(x for x in text.splitlines() if "checkpoint:" not in x))
        cfg = load_model_config(tmp_path / f"{name}.yaml")
        module = cfg.teacher.arch.split(":")[0]
        assert (byom.HERE / f"{module}.py").is_file()
        assert [p.name for p in cfg.passes] == ["search", "distill", "prune", "quantize", "lower", "profile", "report"]


def test_the_plain_cnn_is_a_bare_sequential_without_the_attributes_the_old_proxies_needed() -> None:
    sys.path.insert(0, str(byom.HERE))
    import plain_cnn

    m = plain_cnn.cnn(1, 10)
    assert type(m) is torch.nn.Sequential and not hasattr(m, "fc") and not hasattr(m, "features")
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert 20e6 < count_macs(m, (1, 28, 28)) < 25e6


def test_per_stage_rows_carry_their_pass_seconds_and_only_model_files_are_listed() -> None:
    result = {
        "passes": [{"pass": "search", "seconds": 1.5}, {"pass": "distill", "seconds": 30.0}],
        "stages": [
            {"stage": "input", "params": 10},
            {"stage": "search", "params": 5},
            {"stage": "distill", "params": 5, "accuracy": 88.0},
        ],
        "artifacts": {
            "onnx": {"path": "student.onnx", "kind": "onnx", "precision": "fp32", "backend": "onnx", "bytes": 9},
            "search_json": {"path": "search.json", "kind": "json"},
            "tflite_int8": {"path": "student.int8.tflite", "kind": "tflite", "precision": "int8", "backend": "tflite"},
        },
    }
    rows = byom.per_stage(result)
    assert [r["seconds"] for r in rows] == [None, 1.5, 30.0] and rows[2]["accuracy"] == 88.0
    files = byom.deployable(result)
    assert sorted(files) == ["onnx", "tflite_int8"] and files["onnx"]["bytes"] == 9
