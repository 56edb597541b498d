"""A pruned student is reported with its pruned size: every artifact row, result.json's student, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgekd
from tests.helpers import TINY_TEACHER, tiny_config, write_config


def test_every_artifact_of_a_pruned_compile_reports_the_pruned_params_and_macs(tmp_path: Path) -> None:
    pytest.importorskip("litert_torch", reason="the tflite extra is not installed")
    cfg = tiny_config(
        tmp_path,
        passes=[
            {"prune": {"ratio": 0.5, "steps": 1, "round_to": 2, "recovery": {"epochs": 1}}},
            {"quantize": {"precision": "int8"}},
            {"lower": {"parity": {"samples": 32, "min_top1": 80.0, "min_cosine": 0.9}}},
        ],
    )
    cfg["student"] = {"arch": "resnet", "params": dict(TINY_TEACHER)}
    res = edgekd.compile(write_config(tmp_path, cfg), target="raspberry-pi-4", out=tmp_path / "runs", quiet=True)
    result = json.loads(res.result_path.read_text())
    prune = result["student"]["prune"]
    unpruned = prune["history"][0]
    assert prune["params"] < 0.5 * unpruned["params"] and prune["macs"] < unpruned["macs"]
    assert (result["student"]["params"], result["student"]["macs"]) == (prune["params"], prune["macs"])
    models = {n: a for n, a in result["artifacts"].items() if a["kind"] in ("onnx", "tflite")}
    assert {"onnx", "onnx_int8", "tflite_fp32", "tflite_int8"} <= models.keys()
    for name, a in models.items():
        assert (a["params"], a["macs"]) == (prune["params"], prune["macs"]), name
    for row in result["pass_table"]:
        if row["stage"] in ("prune", "quantize", "lower"):
            assert row["params"] == prune["params"], row
    summary = res.report_path.read_text().split("## Summary")[1].split("## ")[0]
    student_rows = [line for line in summary.splitlines() if line.startswith("| student")]
    assert len(student_rows) == len(models)
    assert all(f"| {prune['params']:,} |" in line for line in student_rows), student_rows


def test_the_distill_row_before_a_prune_keeps_the_unpruned_students_macs(tmp_path: Path) -> None:
    """Before: the distill row had no MACs of its own and the pass table filled in the final (pruned) student's,
    so the distilled student was printed with its own params but the pruned one's MACs."""
    from edgekd.models import zoo
    from edgekd.models.count import count_macs

    cfg = tiny_config(
        tmp_path,
        passes=[
            {"distill": {"epochs": 1, "batch_size": 64}},
            {"prune": {"ratio": 0.5, "steps": 1, "round_to": 2, "recovery": {"epochs": 0}}},
        ],
    )
    cfg["student"] = {"arch": "resnet", "params": dict(TINY_TEACHER)}
    res = edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    result = json.loads(res.result_path.read_text())
    rows = {row["stage"]: row for row in result["pass_table"]}
    unpruned = count_macs(zoo.build("resnet", dict(TINY_TEACHER)), tuple(result["data"]["input_shape"]))
    assert rows["distill"]["macs"] == unpruned > rows["prune"]["macs"]
