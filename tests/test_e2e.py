"""End to end: the shipped example (real trained teacher, real Fashion-MNIST images) on the bundled subset."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

import edgekd
from edgekd.core.artifacts import sha256_file
from tests.helpers import EXAMPLE

FAST = [
    "data.subset=true",
    "passes[0].distill.epochs=5",
    # 5 epochs on the subset stay ~15 points below the teacher: a guard that loose lets the compile finish
    "constraints.max_accuracy_drop=25",
    "passes[3].profile.runs=50",
    "passes[3].profile.warmup=5",
]


def test_example_compiles_on_the_bundled_subset(tmp_path: Path) -> None:
    res = edgekd.compile(EXAMPLE / "model.yaml", target="x86-cpu", out=tmp_path / "runs", overrides=FAST, quiet=True)
    r = json.loads(res.result_path.read_text())
    assert r["schema_version"] == 3 and r["target"]["measured_on_target"] is True

    teacher_acc = r["teacher"]["test_accuracy"]
    assert teacher_acc > 90.0, "the committed teacher is trained (>= 93% on the full test set)"
    arts = r["artifacts"]
    # a 78k-parameter student after 5 short KD epochs on 4,500 images: well above chance, not yet at the teacher
    assert arts["onnx"]["accuracy"] > 75.0
    assert abs(arts["onnx_int8"]["accuracy"] - arts["onnx"]["accuracy"]) < 3.0
    assert arts["onnx"]["parity"]["passed"] and arts["onnx"]["parity"]["max_abs_diff"] < 1e-4
    assert arts["onnx_int8"]["parity"]["top1_agreement"] >= 97.0

    for name in ("onnx", "onnx_int8", "teacher_onnx"):
        onnx.checker.check_model(str(res.artifacts[name]))
        assert sha256_file(res.artifacts[name]) == arts[name]["sha256"]
        lat = arts[name]["latency"]
        assert lat["measured"] and lat["on_target"] and 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert arts["onnx_int8"]["bytes"] < arts["onnx"]["bytes"] < arts["teacher_onnx"]["bytes"]
    # the student does ~1/10 of the teacher's MACs: it must be measurably faster, whatever the machine load
    assert arts["onnx_int8"]["latency"]["speedup_vs_teacher"] > 1.5

    assert r["constraints"]["max_accuracy_drop"]["limit"] == 25
    assert r["data"]["test"] == 2000 and "subset" in r["data"]["source"]
    report = res.report_path.read_text()
    for section in ("## Summary", "## Artifacts", "## Latency", "## Distillation", "## Quantization", "## Environment"):
        assert section in report
