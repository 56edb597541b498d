"""lower fails loudly when an export does not reproduce the student, and leaves no complete-looking run; parity
thresholds can be set per artifact (by precision or file name), and a key naming nothing is an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edgekd
import edgekd.backends.onnx.lower as onnx_lower

# modules that bind export_onnx by name when first imported: imported here, before a test below patches it, so a
# module first imported during a patched compile cannot keep the broken exporter for every later test
import edgekd.latency.candidate
import edgekd.stages.profile.stage
import edgekd.stages.quantize.stage
from edgekd.backends.onnx.lower import export_onnx
from edgekd.compiler.plan import load_model_config
from edgekd.core.errors import ConfigError, ParityError
from edgekd.stages.lower.stage import ParityConfig
from tests.helpers import tiny_config, write_config


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


def test_per_artifact_thresholds_fall_back_to_precision_then_global() -> None:
    c = ParityConfig(
        atol=1e-4, min_cosine=0.99, min_top1=97.0,
        per_artifact={"int8": {"min_top1": 90.0}, "student.int8.tflite": {"min_cosine": 0.95}},
    )  # fmt: skip
    assert c.for_artifact("student.int8.tflite", "int8") == {"atol": 1e-4, "min_cosine": 0.95, "min_top1": 90.0}
    assert c.for_artifact("student.int8.onnx", "int8") == {"atol": 1e-4, "min_cosine": 0.99, "min_top1": 90.0}
    assert c.for_artifact("student.fp16.tflite", "fp16") == {"atol": 1e-4, "min_cosine": 0.99, "min_top1": 97.0}


def test_unknown_per_artifact_key_fails_validation_with_its_yaml_path(tmp_path: Path) -> None:
    for key in ("int4", "student.int8.pt"):
        parity = {"per_artifact": {key: {"min_top1": 90.0}}}
        cfg = tiny_config(tmp_path, passes=[{"distill": {"epochs": 1}}, {"lower": {"parity": parity}}])
        with pytest.raises(ConfigError) as info:
            load_model_config(write_config(tmp_path, cfg))
        (problem,) = info.value.problems
        assert problem.startswith(f"passes[1].lower.parity.per_artifact: unknown key {key!r}"), problem
        assert "a precision (fp32, fp16, int8) or an artifact's file name ending in .onnx, .tflite" in problem
        assert ("(did you mean 'int8'?)" in problem) == (key == "int4")
    cfg = tiny_config(tmp_path, passes=[{"lower": {"parity": {"per_artifact": {"int8": {"min_cosin": 0.9}}}}}])
    with pytest.raises(ConfigError) as info:
        load_model_config(write_config(tmp_path, cfg))
    assert "per_artifact.int8.min_cosin: unknown key 'min_cosin' (did you mean 'min_cosine'?)" in info.value.problems[0]


def test_a_file_keyed_threshold_is_the_one_its_parity_check_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_lower, "export_onnx", _broken_export)  # fails the global atol (the test above)
    loose = {"parity": {"samples": 16, "per_artifact": {"student.onnx": {"atol": 1e3}}}}
    cfg = tiny_config(tmp_path, passes=[{"distill": {"epochs": 1, "batch_size": 64}}, {"lower": loose}])
    result = edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True).result
    parity = result["lower"]["artifacts"]["onnx"]["parity"]
    assert parity["passed"] and parity["tolerance"]["atol"] == 1e3 and parity["max_abs_diff"] > 1e-4

    misspelt = {"parity": {"samples": 16, "per_artifact": {"studnet.onnx": {"atol": 1e3}}}}
    cfg = tiny_config(tmp_path, passes=[{"distill": {"epochs": 1, "batch_size": 64}}, {"lower": misspelt}])
    with pytest.raises(ConfigError) as info:
        edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs2", quiet=True)
    assert "'studnet.onnx' names no artifact of this run" in info.value.message
    assert info.value.fix is not None and "student.onnx" in info.value.fix
