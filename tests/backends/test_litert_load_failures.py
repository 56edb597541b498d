"""A .tflite file LiteRT refuses gets a fix naming the real cause, read from LiteRT's own message (files written by
hand so the real runtime fails for real): a custom op it lacks, an operator version newer than it, an XNNPACK
delegate that cannot prepare degenerate quantization scales; an XNNPACK message without a cause says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.backends.tflite.runtime import LiteRTModel, degenerate_scales, load_failure_fix
from edgekd.core.errors import ExportError, ProfilingError
from edgekd.latency import measure as latency
from tests.tflite_files import fc_file


def _load_error(path: Path, delegate: str = "xnnpack") -> ExportError:
    with pytest.raises(ExportError) as info:
        LiteRTModel(path, threads=1, delegate=delegate)
    return info.value


def test_unresolved_custom_op_is_named_and_the_fix_is_to_lower_without_it(tmp_path: Path) -> None:
    err = _load_error(fc_file(tmp_path / "custom.tflite", custom_op="EdgekdTestOp"))
    assert "Encountered unresolved custom op: EdgekdTestOp" in err.message  # LiteRT's words
    assert err.fix is not None and "custom operator EdgekdTestOp" in err.fix and "does not have" in err.fix
    assert "lower the model without it" in err.fix and "truncated" not in err.fix


def test_runner_failure_on_a_custom_op_gets_the_same_fix(tmp_path: Path) -> None:
    path = fc_file(tmp_path / "custom.tflite", custom_op="EdgekdTestOp")
    with pytest.raises(ProfilingError) as info:
        latency.measure([path], runs=2, rounds=1, warmup=0)
    fix = info.value.fix or ""
    assert "custom operator EdgekdTestOp" in fix and "fixed input shapes" not in fix


def test_operator_newer_than_the_runtime_says_upgrade(tmp_path: Path) -> None:
    err = _load_error(fc_file(tmp_path / "v99.tflite", op_version=99))
    assert "version '99'" in err.message
    assert err.fix is not None and "FULLY_CONNECTED version 99" in err.fix and "upgrade ai-edge-litert" in err.fix


def test_zero_output_scale_fails_xnnpack_prepare_and_is_called_degenerate(tmp_path: Path) -> None:
    path = fc_file(tmp_path / "zero.tflite", int8=True, output_scale=1e-38)  # a collapsed (constant) output range
    err = _load_error(path)
    assert "TfLiteXNNPackDelegate) failed to prepare" in err.message and "unsupported scale value" in err.message
    assert err.fix is not None and "quantization scales are degenerate (y (scale 1e-38))" in err.fix
    assert "recalibrate" in err.fix and "fp32" in err.fix and "truncated" not in err.fix
    LiteRTModel(path, threads=1, delegate="none")  # the built-in kernels take it: the file itself is whole


def test_xnnpack_runtime_failure_without_scale_in_the_message_is_traced_to_the_file(tmp_path: Path) -> None:
    # requantization scale 0.01 * 0.01 / 1e-12 is out of XNNPACK's range; its message only says the runtime failed
    path = fc_file(tmp_path / "tiny.tflite", int8=True, output_scale=1e-12)
    err = _load_error(path)
    assert "failed to create XNNPACK runtime" in err.message and "scale" not in err.message
    assert err.fix is not None and "degenerate (y (scale 1e-12))" in err.fix


def test_degenerate_scales_lists_dead_channels_only(tmp_path: Path) -> None:
    assert degenerate_scales(fc_file(tmp_path / "ok.tflite", int8=True)) == []
    dead = fc_file(tmp_path / "dead.tflite", int8=True, weight_scales=(0.01, 0.0))
    assert degenerate_scales(dead) == ["w (channel 1: scale 0)", "b (channel 1: scale 0)"]
    assert degenerate_scales(tmp_path / "missing.tflite") == []


def test_xnnpack_failure_without_a_cause_says_it_is_unknown() -> None:
    # the message LiteRT 2.3 prints when XNNPACK cannot build its runtime (its own strings), with no file to read
    text = "failed to create XNNPACK runtimeNode number 1 (TfLiteXNNPackDelegate) failed to prepare."
    fix = load_failure_fix(text)
    assert fix is not None and "cause unknown" in fix and "runtime.options.delegate: none" in fix
    assert load_failure_fix("some other failure") is None
