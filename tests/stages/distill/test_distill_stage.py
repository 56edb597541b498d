"""distill: objectives from YAML, layer pairing checked up front, inheritance, data fraction, teacher labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import edgekd
from edgekd.compiler.plan import load_model_config
from edgekd.core.errors import ConfigError
from tests.helpers import TINY_TEACHER, tiny_config, write_config


def _compile(tmp_path: Path, distill: dict, **data: object) -> edgekd.CompileResult:
    cfg = tiny_config(tmp_path, passes=[{"distill": {"batch_size": 64, **distill}}, {"report": {}}])
    cfg["data"].update(data)
    return edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)


def test_distill_improves_the_student_and_leaves_the_teacher_untouched(tmp_path: Path) -> None:
    tiny_config(tmp_path)  # writes the teacher checkpoint the compile reads
    before = torch.load(tmp_path / "teacher.pt", weights_only=True)
    res = _compile(
        tmp_path, {"epochs": 2, "loss": {"ce": 0.5, "kd": {"weight": 0.5, "temperature": 4}}}, train_limit=2000
    )
    d = res.metrics["distill"]
    assert len(d["epochs"]) == 2 and d["epochs"][0]["loss_kd"] > 0 and d["epochs"][0]["loss_ce"] > 0
    assert d["test_accuracy"] > 25.0, d  # chance is 10%: the student learned (the tiny teacher is untrained)
    after = torch.load(tmp_path / "teacher.pt", weights_only=True)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in after)


def test_feature_terms_with_different_widths_train_end_to_end(tmp_path: Path) -> None:
    pairs = [{"student": "layer2", "teacher": "layer3"}]
    loss = {
        "ce": 1.0,
        "fitnet": {"weight": 1.0, "pairs": pairs},
        "at": {"weight": 10.0, "pairs": pairs},
        "sp": {"weight": 1.0, "pairs": [{"student": "layer3", "teacher": "layer3"}]},
        "rkd": {"weight": 1.0, "pairs": [{"student": "layer3", "teacher": "layer3"}]},
        "diswot_semantic": {"weight": 1.0, "pairs": [{"student": "layer3", "teacher": "layer3"}]},
        "diswot_relation": {"weight": 1.0, "pairs": [{"student": "layer3", "teacher": "layer3"}]},
    }
    res = _compile(tmp_path, {"epochs": 1, "loss": loss, "augment": False})
    epoch = res.metrics["distill"]["epochs"][0]
    for term in ("ce", "fitnet", "at", "sp", "rkd", "diswot_semantic", "diswot_relation"):
        assert epoch[f"loss_{term}"] > 0, term


def test_wrong_layer_name_fails_before_anything_runs(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        passes=[
            {
                "distill": {
                    "loss": {
                        "ce": 1,
                        "fitnet": {
                            "weight": 1,
                            "pairs": [
                                {"student": "layer9", "teacher": "layer3"},
                                {"student": "layer1", "teacher": "fc2"},
                            ],
                        },
                    }
                }
            }
        ],
    )
    with pytest.raises(ConfigError) as info:
        edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    text = str(info.value)
    assert "passes[0].distill.loss.fitnet.pairs[0].student: no layer 'layer9' in the student" in text
    assert "passes[0].distill.loss.fitnet.pairs[1].teacher: no layer 'fc2' in the teacher; did you mean 'fc'" in text
    assert "top-level layers: stem, layer1, layer2, layer3, pool, flatten, fc" in text
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        ({"kdd": 1}, "unknown loss term 'kdd' (did you mean 'kd'?)"),
        ({"kd": {"weight": 1, "temprature": 4}}, "kd.temprature: unknown option (did you mean 'temperature'?)"),
        ({"fitnet": 1}, "fitnet.pairs: required"),
        ({"ce": -1}, "ce.weight: must be a number >= 0"),
        ({"ce": 0}, "every term has weight 0"),
    ],
)
def test_loss_config_errors(tmp_path: Path, loss: dict, message: str) -> None:
    cfg = tiny_config(tmp_path, passes=[{"distill": {"loss": loss}}])
    with pytest.raises(ConfigError) as info:
        load_model_config(write_config(tmp_path, cfg))
    assert message in str(info.value) and "passes[0].distill.loss" in str(info.value)


def test_inherit_copies_every_tensor_of_an_identical_student(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        passes=[
            {
                "distill": {
                    "epochs": 1,
                    "init": "inherit",
                    "loss": {"kd": 1.0},
                    "optimizer": {"lr": 1e-9},
                    "augment": False,
                }
            }
        ],
    )
    cfg["student"] = {"arch": "resnet", "params": dict(TINY_TEACHER)}
    res = edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    inherited = res.metrics["distill"]["inherited"]
    assert inherited["random"] == 0 and inherited["sliced"] == 0 and inherited["copied"] > 20


def test_inherit_in_the_pass_ranks_channel_groups_of_the_frozen_teacher(tmp_path: Path) -> None:
    # a narrower student: the pass freezes the teacher first, and the L1 ranking must still trace it
    distill = {"epochs": 1, "init": "inherit", "loss": {"kd": 1.0}, "optimizer": {"lr": 1e-9}, "augment": False}
    cfg = tiny_config(tmp_path, passes=[{"distill": distill}])
    cfg["student"] = {"arch": "resnet", "params": {**TINY_TEACHER, "width": TINY_TEACHER["width"] // 2}}
    res = edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    inherited = res.metrics["distill"]["inherited"]
    assert inherited["channels"] == "l1-groups" and inherited["sliced"] > 10 and inherited["random"] == 0


def test_inherited_identical_student_computes_the_teacher_function() -> None:
    from edgekd.models import zoo
    from edgekd.train.inherit import inherit

    torch.manual_seed(0)
    teacher, student = zoo.build("resnet", TINY_TEACHER).eval(), zoo.build("resnet", TINY_TEACHER).eval()
    x = torch.randn(4, 1, 28, 28)
    assert not torch.allclose(student(x), teacher(x))
    inherit(student, teacher)
    assert torch.equal(student(x), teacher(x))


def test_inherit_slices_narrower_layers() -> None:
    from edgekd.models import zoo
    from edgekd.train.inherit import inherit

    teacher = zoo.build("resnet", TINY_TEACHER)
    student = zoo.build("resnet", {**TINY_TEACHER, "width": 4})
    counts = inherit(student, teacher)
    assert counts["sliced"] > 10
    assert torch.equal(student.stem[0].weight, teacher.stem[0].weight[:4])


def test_fraction_and_teacher_labels(tmp_path: Path) -> None:
    res = _compile(tmp_path, {"epochs": 1, "fraction": 0.25, "labels": "teacher", "loss": {"ce": 1.0}})
    d = res.metrics["distill"]
    assert d["train_samples"] == 128 and d["labels"] == "teacher"


def test_fraction_and_labels_from_the_data_section(tmp_path: Path) -> None:
    """data.fraction / data.labels (as the issue spells them) are the defaults; distill.* overrides them."""
    res = _compile(tmp_path, {"epochs": 1, "loss": {"ce": 1.0}}, fraction=0.5, labels="teacher")
    d = res.metrics["distill"]
    assert d["train_samples"] == 256 and d["labels"] == "teacher" and d["fraction"] == 0.5
    res = _compile(tmp_path / "b", {"epochs": 1, "fraction": 0.25, "loss": {"ce": 1.0}}, fraction=0.5)
    assert res.metrics["distill"]["train_samples"] == 128


def test_minilm_distills_a_small_transformer(tmp_path: Path) -> None:
    from edgekd.models import zoo

    teacher_params = {"dim": 32, "depth": 3, "heads": 2}
    torch.manual_seed(0)
    torch.save(zoo.build("tests.train.tiny_vit:build", teacher_params).state_dict(), tmp_path / "vit.pt")
    cfg = tiny_config(
        tmp_path,
        passes=[
            {
                "distill": {
                    "epochs": 1,
                    "batch_size": 64,
                    "augment": False,
                    "loss": {
                        "ce": 1.0,
                        "minilm": {"weight": 1.0, "pairs": [{"student": "blocks.1.attn", "teacher": "blocks.2.attn"}]},
                    },
                }
            }
        ],
    )
    cfg["teacher"] = {"arch": "tests.train.tiny_vit:build", "params": teacher_params, "checkpoint": "vit.pt"}
    cfg["student"] = {"arch": "tests.train.tiny_vit:build", "params": {"dim": 16, "depth": 2, "heads": 2}}
    res = edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    epoch = res.metrics["distill"]["epochs"][0]
    assert epoch["loss_minilm"] > 0 and epoch["loss_ce"] > 0
    assert res.metrics["student"]["arch"] == "tests.train.tiny_vit:build"
