"""A user's own model, as a new user writes it: a builder in a file next to model.yaml (no PYTHONPATH), a forward
that returns a tuple or a dict (``output:`` picks the logits), and a student that has collapsed to a constant
output is refused before it can be called deployable. Before: the builder was not importable, a tuple output
ended the compile, and a constant student passed parity and was shipped."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import edgekd
from edgekd.config.model import ModelSpec
from edgekd.core.errors import ModelError
from edgekd.models.build import build, check_input
from tests.helpers import write_config

BUILDERS = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=10, returns="tuple", collapsed=False):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.classifier = nn.Linear(4, num_classes)
        self.returns = returns
        if collapsed:  # every input gives the bias
            nn.init.zeros_(self.classifier.weight)

    def forward(self, x):
        f = self.features(x)
        z = self.classifier(f)
        if self.returns == "tuple":
            return z, f
        if self.returns == "dict":
            return {"features": f, "logits": z}
        return z


def cnn(**kw):
    return Net(**kw)
"""

PASSES = [{"lower": {"parity": {"samples": 16, "min_top1": 1.0, "min_cosine": 0.01}}}, {"report": {}}]


def _config(tmp_path: Path, module: str, teacher: dict, student: dict) -> Path:
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(BUILDERS))
    cfg = {
        "name": "byom",
        "teacher": {"arch": f"{module}:cnn", **teacher},
        "student": {"arch": f"{module}:cnn", **student},
        "data": {"source": "fashion-mnist", "subset": True, "train_limit": 256, "test_limit": 64},
        "calibration": {"samples": 16},
        "passes": PASSES,
    }
    return write_config(tmp_path, cfg)


def test_a_builder_next_to_model_yaml_with_tuple_and_dict_outputs_compiles(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "byom_outputs",
        {"params": {"returns": "tuple"}, "output": 0},
        {"params": {"returns": "dict"}, "output": "logits"},
    )
    res = edgekd.compile(path, out=tmp_path / "runs", quiet=True)
    assert res.artifacts["onnx"].is_file()
    assert res.result["artifacts"]["onnx"]["parity"]["passed"]
    assert [c["callable"] for c in res.result["code"]] == ["byom_outputs:cnn", "byom_outputs:cnn"]
    assert res.result["code"][0]["file"].endswith("byom_outputs.py")


def test_a_tuple_output_without_output_key_says_which_key_to_set(tmp_path: Path) -> None:
    path = _config(tmp_path, "byom_no_key", {"params": {"returns": "tuple"}}, {"params": {"returns": "plain"}})
    with pytest.raises(ModelError, match="teacher returns a tuple") as err:
        edgekd.compile(path, out=tmp_path / "runs", quiet=True)
    assert "set teacher.output" in (err.value.fix or "") and "2 elements" in (err.value.fix or "")


def test_an_output_key_not_in_the_dict_lists_the_keys(tmp_path: Path) -> None:
    path = _config(tmp_path, "byom_bad_key", {"params": {"returns": "dict"}, "output": "logit"}, {})
    with pytest.raises(ModelError, match=r"teacher\.output 'logit'.*keys features, logits"):
        edgekd.compile(path, out=tmp_path / "runs", quiet=True)


def test_a_collapsed_student_is_refused_before_it_is_called_deployable(tmp_path: Path) -> None:
    student = {"params": {"returns": "plain", "collapsed": True}}
    path = _config(tmp_path, "byom_collapsed", {"params": {"returns": "plain"}}, student)
    with pytest.raises(ModelError, match="same logits for every input"):
        edgekd.compile(path, out=tmp_path / "runs", quiet=True)
    assert not list((tmp_path / "runs").glob("byom-*/result.json"))


def test_taps_named_in_model_yaml_reach_the_model() -> None:
    from edgekd.config.model import ModelSpec
    from edgekd.models.build import build
    from edgekd.models.taps import NAMED

    spec = ModelSpec(arch="resnet", params={"depth": 8, "width": 4}, taps={"features": "layer2", "classifier": "fc"})
    assert getattr(build(spec, "teacher"), NAMED) == {"features": "layer2", "classifier": "fc"}
    wrapped = ModelSpec(arch="resnet", output=0, taps={"classifier": "fc"})
    assert getattr(build(wrapped, "teacher"), NAMED) == {"classifier": "model.fc"}


def test_a_search_runs_with_a_user_cnn_teacher(tmp_path: Path) -> None:
    """Before: 'teacher Net has no features(x) method and fc classifier — search spaces use zoo architectures'."""
    (tmp_path / "byom_search.py").write_text(textwrap.dedent(BUILDERS))
    search = {
        "space": {"blocks": [[1], [1], [1]], "widths": [[4, 8], [8], [16]], "kernel": [3]},
        "population": 2, "sample": 2, "iterations": 2, "batches": 1, "batch_size": 16, "budget": {"params": 30000},
        "proxy": "diswot",  # the teacher-aware proxy: it finds the user teacher's taps by hooks
    }  # fmt: skip
    cfg = {
        "name": "byom-search",
        "teacher": {"arch": "byom_search:cnn", "params": {"returns": "plain"}},
        "data": {"source": "fashion-mnist", "subset": True, "train_limit": 256, "test_limit": 64},
        "calibration": {"samples": 16},
        "passes": [{"search": search}, {"report": {}}],
    }
    res = edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    assert res.metrics["search"]["proxy"] == "diswot" and res.metrics["search"]["chosen"]


def test_a_model_library_that_is_not_installed_names_itself_and_the_fix() -> None:
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here")
    with pytest.raises(ModelError, match=r"teacher.arch: 'torchvision:resnet18' needs torchvision") as err:
        build(ModelSpec(arch="torchvision:resnet18"), "teacher")
    assert "pip install torchvision" in (err.value.fix or "")


@pytest.mark.parametrize(("arch", "params"), [("timm:resnet18", {"pretrained": True}),
                                               ("torchvision:resnet18", {"weights": "DEFAULT"})])  # fmt: skip
def test_pretrained_downloads_are_refused_before_anything_is_imported(arch: str, params: dict) -> None:
    with pytest.raises(ModelError, match="downloads weights from the internet; leave it out") as err:
        build(ModelSpec(arch=arch, params=params), "teacher")
    assert "checkpoint:" in str(err.value)


def test_a_torchvision_architecture_builds_and_takes_a_checkpoint(tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision", reason="torchvision does not import beside this torch build")
    spec = ModelSpec(arch="torchvision:mobilenet_v3_small", params={"num_classes": 10})
    model = build(spec, "teacher")
    assert isinstance(model, torchvision.models.MobileNetV3)
    check_input(model, (3, 224, 224), 10, "teacher")
