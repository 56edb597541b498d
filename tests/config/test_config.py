"""model.yaml validation: every problem is reported with its YAML path and a fix, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.compiler.plan import load_model_config, parse_model_config
from edgekd.core.errors import ConfigError
from tests.helpers import tiny_config, write_config


def problems_of(folder: Path, **overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_model_config(write_config(folder, tiny_config(folder, **overrides)))
    return info.value.problems


def test_valid_config_loads_with_typed_passes(tiny: Path) -> None:
    cfg = load_model_config(tiny)
    assert [p.name for p in cfg.passes] == ["distill", "quantize", "lower", "profile", "report"]
    assert cfg.passes[0].config.epochs == 1
    assert cfg.passes[1].config.precision == "int8"
    assert cfg.base_dir == tiny.parent.resolve()


def test_bad_precision_names_the_yaml_path_and_choices(tmp_path: Path) -> None:
    probs = problems_of(tmp_path, passes=[{"distill": {}}, {"quantize": {"precision": "int4"}}])
    assert probs == ["passes[1].quantize.precision: 'int4' is not one of int8, fp16, fp32"]


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    probs = problems_of(tmp_path, passes=[{"distill": {"epocs": 3}}])
    assert len(probs) == 1
    assert probs[0].startswith("passes[0].distill.epocs: unknown key 'epocs' (did you mean 'epochs'?)")


def test_unknown_top_level_and_nested_keys(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    cfg["teachr"] = {}
    cfg["data"]["val_fraction"] = 0.9
    with pytest.raises(ConfigError) as info:
        parse_model_config(cfg, tmp_path / "model.yaml")
    text = "\n".join(info.value.problems)
    assert "teachr: unknown key 'teachr' (did you mean 'teacher'?)" in text
    assert "data.val_fraction: 0.9 is out of range" in text


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    probs = problems_of(
        tmp_path,
        passes=[{"distill": {"epochs": 0, "optimizer": {"lr": -1}}}, {"quantise": {}}],
        calibration={"samples": 0},
    )
    joined = "\n".join(probs)
    assert "passes[0].distill.epochs" in joined and "passes[0].distill.optimizer.lr: -1 is out of range" in joined
    assert "passes[1]: unknown pass 'quantise' (did you mean 'quantize'?)" in joined
    assert "calibration.samples" in joined
    assert len(probs) == 4


def test_unknown_architecture(tmp_path: Path) -> None:
    probs = problems_of(tmp_path, student={"arch": "resnett", "params": {}})
    assert probs[0].startswith("student.arch: unknown architecture 'resnett' (did you mean 'resnet'?)")


def test_missing_checkpoint_and_data_path_are_named(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    cfg["teacher"]["checkpoint"] = "nope.pt"
    cfg["data"] = {"source": "npz", "path": "missing.npz"}
    with pytest.raises(ConfigError) as info:
        load_model_config(write_config(tmp_path, cfg))
    text = str(info.value)
    assert f"teacher.checkpoint: file not found: {tmp_path / 'nope.pt'}" in text
    assert "data.path: not found" in text
    assert "fix:" in text


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text("name: x\nteacher:\n  arch: resnet\n   params: {}\n")
    with pytest.raises(ConfigError, match=r"YAML syntax error at line 4, column 10"):
        load_model_config(path)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_model_config(path)


def test_top_level_must_be_mapping_and_passes_required(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_model_config(path)
    cfg = tiny_config(tmp_path)
    del cfg["passes"]
    with pytest.raises(ConfigError, match="passes: required key is missing"):
        parse_model_config(cfg)


def test_source_specific_requirements(tmp_path: Path) -> None:
    probs = problems_of(tmp_path, data={"source": "callable"})
    assert probs == ["data: source 'callable' needs callable: 'package.module:function'"]


def test_overrides_set_nested_values(tiny: Path) -> None:
    cfg = load_model_config(
        tiny, ["passes[0].distill.epochs=7", "data.train_limit=100", "constraints.max_accuracy_drop=2"]
    )
    assert cfg.passes[0].config.epochs == 7
    assert cfg.data.train_limit == 100 and cfg.constraints.max_accuracy_drop == 2


def test_overrides_are_validated_like_the_file(tiny: Path) -> None:
    with pytest.raises(ConfigError, match=r"passes\[0\]\.distill\.epochs: 0 is out of range"):
        load_model_config(tiny, ["passes[0].distill.epochs=0"])
    with pytest.raises(ConfigError, match=r"no list item \[9\]"):
        load_model_config(tiny, ["passes[9].distill.epochs=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_model_config(tiny, ["passes[0]distill"])


def test_an_accuracy_guard_without_a_validation_split_is_a_config_error(tmp_path: Path) -> None:
    data = {**tiny_config(tmp_path)["data"], "val_fraction": 0.0}
    probs = problems_of(tmp_path, constraints={"max_accuracy_drop": 1.0}, data=data)
    assert probs == [
        "constraints.max_accuracy_drop: the accuracy guard compares on the validation split, but data.val_fraction "
        "is 0 (there is none); set data.val_fraction (e.g. 0.1) or remove the constraint"
    ]
