"""prune pass: pruned student flows on (lower, cache), is saved reloadable, and the accuracy guard holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import edgekd
from edgekd.config.model import ModelSpec
from edgekd.core.errors import AccuracyGuardError, PipelineError
from edgekd.models.build import build, load_state_dict
from tests.helpers import TINY_TEACHER, tiny_config, trained_tiny_teacher, write_config

PARITY = {"lower": {"parity": {"samples": 64}}}


def test_prune_then_lower_export_and_resume(tmp_path: Path) -> None:
    prune = {"ratio": 0.5, "steps": 2, "round_to": 2, "recovery": {"epochs": 1}}
    cfg = tiny_config(tmp_path, passes=[{"prune": prune}, PARITY, {"report": {}}])
    cfg["student"] = {"arch": "resnet", "params": dict(TINY_TEACHER)}
    path = write_config(tmp_path, cfg)
    res = edgekd.compile(path, out=tmp_path / "runs", quiet=True)
    p = res.metrics["prune"]
    assert [h["step"] for h in p["history"]] == [0, 1, 2] and p["kept_step"] == 2
    assert p["params"] < 0.4 * p["history"][0]["params"] and p["macs"] < p["history"][0]["macs"]
    assert res.metrics["lower"]["artifacts"]["onnx"]["parity"]["passed"]  # the pruned student exports exactly
    spec = json.loads(res.artifacts["student_pruned_spec"].read_text())
    model = build(ModelSpec(arch=spec["arch"], params=spec["params"], shapes=spec["shapes"]), "student")
    model.load_state_dict(load_state_dict(res.artifacts["student_pruned"], "student"))
    assert sum(t.numel() for t in model.parameters()) == p["params"]
    manifest = json.loads(res.manifest_path.read_text())
    assert manifest["artifacts"]["student_pruned"]["sha256"] == spec["weights_sha256"]
    result = json.loads(res.result_path.read_text())
    assert result["student"]["prune"]["kept_step"] == 2
    # the cache restores the pruned student from its spec (shapes) without running the pass again
    again = edgekd.compile(path, out=tmp_path / "runs", quiet=True)
    statuses = {r["pass"]: r["status"] for r in json.loads(again.manifest_path.read_text())["passes"]}
    assert statuses["prune"] == "cached" and statuses["lower"] == "cached"


def _guarded(tmp_path: Path, prune: dict, drop: float, student_is_teacher: bool) -> dict:
    trained_tiny_teacher(tmp_path)
    cfg = tiny_config(tmp_path, passes=[{"prune": prune}, {"report": {}}], constraints={"max_accuracy_drop": drop})
    cfg["data"].update(train_limit=1024, test_limit=512)
    if student_is_teacher:
        cfg["student"] = {"arch": "resnet", "params": dict(TINY_TEACHER), "checkpoint": "teacher.pt"}
    return cfg


def test_guard_stops_the_schedule_and_keeps_the_most_pruned_model_that_meets_it(tmp_path: Path) -> None:
    cfg = _guarded(tmp_path, {"ratio": 0.9, "steps": 3, "round_to": 1, "recovery": {"epochs": 0}}, 1.0, True)
    res = edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    p = res.metrics["prune"]
    floor = p["guard"]["floor_val_accuracy"]
    assert "accuracy guard at step" in p["stopped"], p["stopped"]
    broken = p["history"][-1]
    assert broken["meets_guard"] is False and broken["val_accuracy"] < floor
    assert p["kept_step"] == broken["step"] - 1 and p["val_accuracy"] >= floor
    assert any("most pruned model that meets the guard" in n or "kept unpruned" in n for n in res.notes)


def test_guard_that_cannot_be_met_fails_but_saves_the_best_model_and_report(tmp_path: Path) -> None:
    cfg = _guarded(tmp_path, {"ratio": 0.5, "steps": 1, "round_to": 1, "recovery": {"epochs": 0}}, 0.5, False)
    with pytest.raises(AccuracyGuardError) as info:  # a random student is far below the trained teacher
        edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    err = info.value
    assert "prune: cannot meet constraints.max_accuracy_drop 0.5 points" in str(err)
    assert "the best reached was" in str(err) and err.best_accuracy is not None
    run = next((tmp_path / "runs").glob("tiny-*"))
    assert (run / "student.pruned.safetensors").is_file() and (run / "student.pruned.json").is_file()
    result = json.loads((run / "result.failed.json").read_text())
    assert result["failed"]["pass"] == "prune" and result["failed"]["best_accuracy_val"] == err.best_accuracy
    assert "cannot meet" in (run / "report.failed.md").read_text()
    manifest = json.loads((run / "manifest.json").read_text())
    assert {"student_pruned", "student_pruned_spec", "result_failed_json"} <= set(manifest["artifacts"])


def test_two_four_sparsity_masks_survive_recovery(tmp_path: Path) -> None:
    from edgekd.models.sparsity_2_4 import is_2_4

    cfg = tiny_config(
        tmp_path,
        passes=[
            {"prune": {"ratio": 0.25, "steps": 1, "round_to": 4, "sparsity_2_4": True, "recovery": {"epochs": 1}}},
            {"report": {}},
        ],
    )
    cfg["student"] = {"arch": "resnet", "params": {**TINY_TEACHER, "width": 16}}
    res = edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    sp = res.metrics["prune"]["sparsity_2_4"]
    assert sp["kept"] and "layer1.0.conv1" in sp["layers"] and sp["trtexec_flag"] == "--sparsity=enable"
    state = load_state_dict(res.artifacts["student_pruned"], "student")
    assert is_2_4(state["layer1.0.conv1.weight"]) and is_2_4(state["fc.weight"])
    assert any("no TensorRT backend" in n for n in res.notes)


def test_prune_after_quantize_is_refused(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, passes=[{"quantize": {}}, {"prune": {}}])
    with pytest.raises(PipelineError, match=r"passes\[1\]\.prune cannot run after the student was quantized"):
        edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)


def test_unknown_ignore_layer_fails_before_anything_runs(tmp_path: Path) -> None:
    from edgekd.core.errors import ConfigError

    cfg = tiny_config(tmp_path, passes=[{"prune": {"ignore": ["fc2"]}}])
    with pytest.raises(ConfigError, match=r"passes\[0\].prune.ignore: no layer 'fc2'"):
        edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    assert not (tmp_path / "runs").exists()


_ = torch
