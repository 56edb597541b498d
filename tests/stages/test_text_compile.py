"""A text classifier compiled end to end: shrink student, distill, INT8, ONNX with named token inputs, latency per
sequence length, tokenizer shipped beside the artifacts; unsupported passes and backends refused up front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

import edgekd
from edgekd.core.errors import ConfigError
from tests.helpers import write_config
from tests.text_helpers import make_teacher, text_config


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("text-teacher") / "teacher")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory, teacher: Path) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("textc")
    cfg = text_config(folder, teacher)
    r = edgekd.compile(write_config(folder, cfg), target="x86-cpu", out=folder / "runs", quiet=True)
    return r.run_dir, json.loads(r.result_path.read_text())


def test_student_is_distilled_and_lowered_with_token_inputs(compiled):
    run, res = compiled
    import onnxruntime

    assert res["teacher"]["val_accuracy"] >= 90  # the tiny teacher learned its task
    assert res["student"]["distill"]["val_accuracy"] >= 90
    for name in ("student.onnx", "student.int8.onnx", "teacher.onnx"):
        sess = onnxruntime.InferenceSession(str(run / name))
        assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
        assert sess.get_inputs()[0].shape[1] == "sequence"
    parity = res["lower"]["artifacts"]
    assert parity["onnx"]["parity"]["passed"] and parity["onnx"]["parity"]["max_abs_diff"] < 1e-4
    assert parity["onnx_int8"]["parity"]["top1_agreement"] >= 80
    assert res["student"]["quantize"]["method"] == "dynamic"


def test_tokenizer_and_labels_ship_beside_the_artifacts(compiled):
    run, _ = compiled
    labels = json.loads((run / "tokenizer" / "labels.json").read_text())
    assert labels["classes"] == ["rotten", "fresh"] and labels["max_length"] == 16
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run / "tokenizer", local_files_only=True)
    assert tok("good film")["input_ids"][0] == tok.cls_token_id
    manifest = json.loads((run / "manifest.json").read_text())
    assert any(a["path"] == "tokenizer/tokenizer.json" and a["sha256"] for a in manifest["artifacts"].values())


def test_latency_is_measured_per_sequence_length(compiled):
    _, res = compiled
    by_length = res["profile"]["sequence_lengths"]
    assert set(by_length) == {"8", "16"} and res["profile"]["sequence_length"] == 16
    for name in ("onnx", "onnx_int8", "teacher_onnx"):
        assert by_length["8"][name]["p50_ms"] > 0 and by_length["16"][name]["p50_ms"] > 0
    assert res["profile"]["results"]["onnx"]["sequence_length"] == 16


@pytest.mark.parametrize(
    ("passes", "target", "match"),
    [
        ([{"prune": {"ratio": 0.3}}], "x86-cpu", "text models are not pruned yet"),
        ([{"quantize": {"method": "qat"}}], "x86-cpu", "qat is not available for text models"),
        ([{"lower": {}}], "jetson-orin-nano", "does not lower text models to yet"),
    ],
)
def test_unsupported_text_paths_are_refused_before_anything_runs(tmp_path, teacher, passes, target, match):
    cfg = text_config(tmp_path, teacher, passes=passes)
    with pytest.raises(ConfigError, match=match):
        edgekd.compile(write_config(tmp_path, cfg), target=target, out=tmp_path / "runs", quiet=True)
    assert not (tmp_path / "runs").exists()


def test_dynamic_int8_is_refused_for_image_models(tiny, tmp_path):
    import yaml

    cfg = yaml.safe_load(tiny.read_text())
    cfg["passes"] = [{"quantize": {"method": "dynamic"}}]
    with pytest.raises(ConfigError, match="method dynamic is for text models"):
        edgekd.compile(write_config(tiny.parent, cfg), target="x86-cpu", out=tmp_path / "runs", quiet=True)


def test_minilm_and_hidden_terms_distill_a_text_student(tmp_path, teacher):
    layer = "model.bert.encoder.layer.{}"
    attn = layer + ".attention.self"
    loss = {
        "kd": {"weight": 1.0, "temperature": 2},
        "minilm": {"weight": 1.0, "pairs": [{"student": attn.format(1), "teacher": attn.format(3)}]},
        "hidden": {"weight": 1.0, "pairs": [{"student": layer.format(1), "teacher": layer.format(3)}]},
    }
    distill = {"epochs": 3, "batch_size": 32, "optimizer": {"name": "adamw", "lr": 1e-3}, "loss": loss}
    cfg = text_config(tmp_path, teacher, passes=[{"distill": distill}])
    r = edgekd.compile(write_config(tmp_path, cfg), target="x86-cpu", out=tmp_path / "runs", quiet=True)
    res = json.loads(r.result_path.read_text())
    epochs = res["student"]["distill"]["epochs"]
    for term in ("loss_kd", "loss_minilm", "loss_hidden"):
        assert epochs[-1][term] < epochs[0][term], term  # each term is optimised
    assert 0 < epochs[-1]["loss_minilm"] < 1 and res["student"]["distill"]["val_accuracy"] >= 90


LAYER1, ATTN3 = "model.bert.encoder.layer.1", "model.bert.encoder.layer.3.attention.self"


@pytest.mark.parametrize(
    ("pair", "extra", "match"),
    [
        ({"student": LAYER1, "teacher": ATTN3}, {},
         r"minilm.pairs\[0\].student: 'model.bert.encoder.layer.1' is not an attention module"),
        ({"student": LAYER1 + ".attention.self", "teacher": ATTN3},
         {"relation_heads": 3}, "3 relation heads do not divide the student's 32 and the teacher's 32-wide"),
    ],
)  # fmt: skip
def test_minilm_pairs_that_cannot_compare_are_refused_before_training(tmp_path, teacher, pair, extra, match):
    distill = {"epochs": 1, "loss": {"kd": 1.0, "minilm": {"weight": 1.0, "pairs": [pair], **extra}}}
    cfg = text_config(tmp_path, teacher, passes=[{"distill": distill}])
    with pytest.raises(ConfigError, match=match):
        edgekd.compile(write_config(tmp_path, cfg), target="x86-cpu", out=tmp_path / "runs", quiet=True)


def test_text_student_lowers_to_tflite_runs_in_litert_and_is_timed_at_its_length(tmp_path, teacher):
    passes = [
        {"distill": {"epochs": 2, "batch_size": 32, "optimizer": {"name": "adamw", "lr": 1e-3}}},
        {"lower": {"tflite": {"precisions": ["fp32", "fp16", "int8"]},
                   "parity": {"samples": 64, "min_top1": 80.0, "min_cosine": 0.9}}},
        {"profile": {"warmup": 2, "runs": 10, "rounds": 2, "sequence_lengths": [8, 16]}},
    ]  # fmt: skip
    cfg = text_config(tmp_path, teacher, passes=passes)
    r = edgekd.compile(write_config(tmp_path, cfg), target="raspberry-pi-4", out=tmp_path / "runs", quiet=True)
    res = json.loads(r.result_path.read_text())
    from edgekd.backends.tflite.runtime import LiteRTModel

    for precision in ("fp32", "fp16", "int8"):
        art = res["artifacts"][f"tflite_{precision}"]
        model = LiteRTModel(r.run_dir / f"student.{precision}.tflite")
        assert model.sequence_length == 16 and len(model.token_inputs) == 3
        assert art["sequence_length"] == 16 and art["accuracy"] >= 90
        parity = res["lower"]["artifacts"][f"tflite_{precision}"]["parity"]
        assert parity["passed"]
        if precision == "fp32":
            assert parity["max_abs_diff"] < 1e-4
        elif precision == "fp16":  # float16 weights, float arithmetic: within fp16 rounding of PyTorch
            dtypes = {d["dtype"].__name__ for d in model.interpreter.get_tensor_details()}
            assert "float16" in dtypes and parity["cosine"] > 0.999 and parity["top1_agreement"] == 100
            assert art["bytes"] < res["artifacts"]["tflite_fp32"]["bytes"]
        else:
            assert art["quantization"]["activations"].startswith("float, quantized at run time")
            assert art["bytes"] < res["artifacts"]["tflite_fp32"]["bytes"]
    by_length = res["profile"]["sequence_lengths"]
    assert "tflite_fp32" in by_length["16"] and "tflite_fp32" not in by_length["8"]  # fixed 16 tokens
    assert "onnx" in by_length["8"] and by_length["16"]["tflite_int8"]["p50_ms"] > 0
    from edgekd.core.errors import ProfilingError
    from edgekd.latency.measure import measure

    with pytest.raises(ProfilingError, match="takes a fixed 16 tokens per sample, asked for --seq-len 8"):
        measure([r.run_dir / "student.fp32.tflite"], warmup=1, runs=2, rounds=1, seq_len=8)


def test_text_students_are_searched_in_the_teachers_own_shrink_space(tmp_path, teacher):
    search = {
        "space": {"type": "text-shrink", "layers": [1, 2, 4], "intermediate_size": [16, 64], "heads": [2, 4]},
        "population": 4, "iterations": 4, "batches": 1, "batch_size": 32,
        "budget": {"macs": [150_000, 1_000_000_000]},
    }  # fmt: skip
    distill = {"epochs": 1, "batch_size": 32, "optimizer": {"name": "adamw", "lr": 1e-3}}
    cfg = text_config(tmp_path, teacher, passes=[{"search": search}, {"distill": distill}])
    del cfg["student"]
    r = edgekd.compile(write_config(tmp_path, cfg), target="x86-cpu", out=tmp_path / "runs", quiet=True)
    doc = json.loads((r.run_dir / "search.json").read_text())
    assert doc["proxy"] == "teacher_kl" and doc["space"] == "text-shrink" and doc["arch"] == "shrink"
    assert all(row["latency_ms"] > 0 for row in doc["history"])  # every candidate timed at 16 tokens
    small, large = (b["chosen"] for b in doc["per_budget"])
    assert small["macs"] <= 150_000 < large["macs"]
    assert max(row["score"] for row in doc["history"]) <= 0  # -KL: 0 is the teacher itself
    full = [row for row in doc["history"] if (row["layers"], row["intermediate_size"], row["heads"]) == (4, 64, 4)]
    if full:  # the whole teacher, inherited, is the teacher: KL 0, the best score
        assert full[0]["score"] == pytest.approx(0, abs=1e-6) and large["score"] == pytest.approx(0, abs=1e-6)
    res = json.loads(r.result_path.read_text())
    assert res["student"]["arch"] == "shrink" and res["student"]["params"] == small["params"]


@pytest.mark.parametrize(
    ("search", "match"),
    [
        ({}, "searched in space type text-shrink"),
        ({"space": {"type": "shrink"}}, "searched in space type text-shrink .*, not shrink"),
        ({"space": {"type": "text-shrink"}, "proxy": "diswot"}, "diswot scores image models"),
    ],
)
def test_text_search_refuses_image_spaces_and_proxies(tmp_path, teacher, search, match):
    cfg = text_config(tmp_path, teacher, passes=[{"search": search}])
    with pytest.raises(ConfigError, match=match):
        edgekd.compile(write_config(tmp_path, cfg), target="x86-cpu", out=tmp_path / "runs", quiet=True)


def test_token_masking_augments_text_distillation_and_is_reported(tmp_path, teacher):
    passes = [
        {"distill": {"epochs": 2, "batch_size": 32, "optimizer": {"name": "adamw", "lr": 1e-3},
                     "augment": {"mask": 0.2}}},
        {"report": {}},
    ]  # fmt: skip
    cfg = text_config(tmp_path, teacher, passes=passes)
    r = edgekd.compile(write_config(tmp_path, cfg), target="x86-cpu", out=tmp_path / "runs", quiet=True)
    res = json.loads(r.result_path.read_text())
    assert res["student"]["distill"]["augment"] == {"mask": 0.2}
    assert res["student"]["distill"]["val_accuracy"] >= 90  # the masked copies still teach the task
    report = (r.run_dir / "report.md").read_text()
    assert "20% of the tokens of every training text were masked anew" in report


def test_image_augmentation_settings_on_text_are_noted_as_ignored(tmp_path, teacher):
    passes = [{"distill": {"epochs": 1, "batch_size": 32, "augment": {"crop": "pad"}}}]
    cfg = text_config(tmp_path, teacher, passes=passes)
    r = edgekd.compile(write_config(tmp_path, cfg), target="x86-cpu", out=tmp_path / "runs", quiet=True)
    notes = json.loads(r.result_path.read_text())["notes"]
    assert any("augment: {mask: 0.1} masks tokens instead" in n for n in notes), notes
