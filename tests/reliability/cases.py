"""The bad-input catalogue: what a user does wrong, and what edgekd must answer.

Each case prepares files in a fresh folder and returns the CLI arguments; the test runs
``edgekd.cli.main`` and checks the error type, exit code, message fragments (naming the
file/key and the fix), that nothing escaped as a traceback, and that no run looks complete.
``python -m tests.reliability.cases`` prints the table kept in ``tests/reliability/README.md``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgekd.models import zoo
from tests.helpers import TINY_TEACHER, tiny_config, trained_tiny_teacher, write_config

Setup = Callable[[Path], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    situation: str
    error: str  # the EdgekdError subclass printed in "error [Type]"
    expect: tuple[str, ...]  # fragments of stderr, each must appear
    setup: Setup = field(repr=False)
    exit_code: int = 2
    creates_run: bool = False  # True when the failure happens after the run folder exists
    fsize_limit: int | None = None  # RLIMIT_FSIZE for the run (simulates a full disk)
    isolated: bool = False  # run in a fresh Python whose path starts with the case folder (modules it shadows)


def _compile(cfg: dict, folder: Path, *extra: str) -> list[str]:
    return ["compile", str(write_config(folder, cfg)), "--out", str(folder / "runs"), "-q", *extra]


def _with(mutate: Callable[[dict, Path], None], *extra: str) -> Setup:
    def setup(folder: Path) -> list[str]:
        cfg = copy.deepcopy(tiny_config(folder))
        mutate(cfg, folder)
        return _compile(cfg, folder, *extra)

    return setup


def _raw_yaml(text: str) -> Setup:
    def setup(folder: Path) -> list[str]:
        tiny_config(folder)  # writes teacher.pt
        (folder / "model.yaml").write_text(text)
        return ["compile", str(folder / "model.yaml"), "--out", str(folder / "runs"), "-q"]

    return setup


def _set(path: str, value: object) -> Callable[[dict, Path], None]:
    def mutate(cfg: dict, _folder: Path) -> None:
        node = cfg
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        last = keys[-1]
        if value is _DELETE:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return mutate


_DELETE = object()


def _npz(folder: Path, n_train: int = 64, labels: int = 10, shape: tuple[int, ...] = (1, 28, 28)) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "data.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 255, (n_train, *shape), dtype=np.uint8),
        y_train=rng.integers(0, labels, n_train),
        x_test=rng.integers(0, 255, (32, *shape), dtype=np.uint8),
        y_test=rng.integers(0, labels, 32),
    )
    return path


def _data_npz(**kw: object) -> Callable[[dict, Path], None]:
    def mutate(cfg: dict, folder: Path) -> None:
        cfg["data"] = {"source": "npz", "path": str(_npz(folder, **kw))}  # type: ignore[arg-type]

    return mutate


def _teacher_ckpt(write: Callable[[Path], None]) -> Callable[[dict, Path], None]:
    def mutate(cfg: dict, folder: Path) -> None:
        write(folder / "other.pt")
        cfg["teacher"]["checkpoint"] = "other.pt"

    return mutate


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch pwned-by-pickle",))


def _evil(path: Path) -> None:
    torch.save({"stem.0.weight": _Evil()}, path)


def _target_file(text: str) -> Setup:
    def setup(folder: Path) -> list[str]:
        (folder / "mytarget.yaml").write_text(text)
        return _compile(tiny_config(folder), folder, "--target", str(folder / "mytarget.yaml"))

    return setup


def _resume_elsewhere(folder: Path) -> list[str]:
    (folder / "not-a-run").mkdir()
    return _compile(tiny_config(folder), folder, "--resume", str(folder / "not-a-run"))


def _init_twice(folder: Path) -> list[str]:
    (folder / "model.yaml").write_text("name: mine\n")
    return ["init", str(folder / "model.yaml")]


def _report_unfinished(folder: Path) -> list[str]:
    (folder / "run").mkdir()
    return ["report", str(folder / "run")]


def _profile_text_file(folder: Path) -> list[str]:
    (folder / "model.txt").write_text("hello")
    return ["profile", str(folder / "model.txt")]


def _without_tflite_extra(folder: Path) -> list[str]:
    """A fresh Python where ``import litert_torch`` fails, as after ``pip install edgekd`` without the extra."""
    (folder / "litert_torch").mkdir()
    (folder / "litert_torch" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'litert_torch'\")\n"
    )
    return _compile(tiny_config(folder), folder, "--target", "raspberry-pi-4")


def _profile_broken_onnx(folder: Path) -> list[str]:
    (folder / "model.onnx").write_bytes(b"\x08\x07garbage")
    return ["profile", str(folder / "model.onnx"), "--runs", "2", "--warmup", "0"]


KTH_NET = """
import torch
from torch import nn


class KthNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        y = self.conv(x).flatten(2)
        return self.fc(torch.kthvalue(y, 3, dim=2).values)  # no ONNX translation of aten::kthvalue


def build():
    return KthNet()
"""


def _student_with_unsupported_op(cfg: dict, folder: Path) -> None:
    (folder / "kth_student_net.py").write_text(KTH_NET)
    cfg["student"] = {"arch": "kth_student_net:build", "params": {}}
    cfg["passes"] = [{"distill": {"epochs": 1}}, {"lower": {}}]


def _image_folder_without_test(cfg: dict, folder: Path) -> None:
    (folder / "imgs" / "train" / "a").mkdir(parents=True)
    cfg["data"] = {"source": "image-folder", "path": str(folder / "imgs")}


def _prune_guard_unmet(folder: Path) -> list[str]:
    """A trained teacher, an untrained student, and a 0.5-point budget that no pruned student can meet."""
    trained_tiny_teacher(folder)
    cfg = tiny_config(
        folder,
        passes=[{"prune": {"ratio": 0.5, "steps": 1, "round_to": 1, "recovery": {"epochs": 0}}}, {"report": {}}],
        constraints={"max_accuracy_drop": 0.5},
    )
    return _compile(cfg, folder)


def _tuple_teacher(folder: Path) -> list[str]:
    """A user builder (importable from the case folder) whose model's forward returns (logits, probabilities)."""
    (folder / "tuple_models.py").write_text(
        "import torch\nfrom edgekd.models import zoo\n\n"
        "class Pair(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.body = zoo.build('resnet', {'depth': 8, 'width': 4, 'in_channels': 1, 'num_classes': 10})\n"
        "    def forward(self, x):\n        y = self.body(x)\n        return y, y.softmax(1)\n\n"
        "def pair():\n    return Pair()\n"
    )
    cfg = tiny_config(folder)
    cfg["teacher"] = {"arch": "tuple_models:pair"}
    return _compile(cfg, folder)


def _unreadable_images(cfg: dict, folder: Path) -> None:
    """An image folder whose test images are all broken files (truncated downloads, text saved as .png)."""
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (folder / "imgs" / split / cls).mkdir(parents=True)
            for i in range(4):
                target = folder / "imgs" / split / cls / f"{i}.png"
                if split == "test":
                    target.write_bytes(b"<html>404</html>")
                else:
                    from PIL import Image

                    Image.fromarray(np.full((28, 28), 60 * i, np.uint8)).save(target)
    cfg["data"] = {"source": "image-folder", "path": str(folder / "imgs"), "num_classes": 10}


BRANCHY = """
import torch
from edgekd.models import zoo


class Branchy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = zoo.build("resnet", {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 10})

    def forward(self, x):
        if x.mean() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.body(x)
        return self.body(-x)


def build():
    return Branchy()
"""


def _qat_untraceable(cfg: dict, folder: Path) -> None:
    (folder / "branchy_student.py").write_text(BRANCHY)
    cfg["student"] = {"arch": "branchy_student:build", "params": {}}
    cfg["passes"] = [{"quantize": {"precision": "int8", "method": "qat", "qat": {"epochs": 1}}}, {"lower": {}}]


def _size_unmet(folder: Path) -> list[str]:
    cfg = tiny_config(
        folder,
        passes=[{"distill": {"epochs": 1, "batch_size": 64}}, {"lower": {"parity": {"samples": 32}}}],
        constraints={"max_size_mb": 1e-6},
    )
    return _compile(cfg, folder)


CASES: list[Case] = [
    Case(
        "yaml-syntax",
        "model.yaml has a tab/indentation error",
        "ConfigError",
        ("YAML syntax error at line 4, column", "fix:"),
        _raw_yaml("name: x\nteacher:\n  arch: resnet\n   params: {}\n"),
    ),
    Case(
        "yaml-not-mapping",
        "model.yaml is a list",
        "ConfigError",
        ("top level must be a mapping", "edgekd init"),
        _raw_yaml("- a\n- b\n"),
    ),
    Case(
        "yaml-python-tag",
        "model.yaml tries to construct a Python object",
        "ConfigError",
        ("YAML",),
        _raw_yaml("name: !!python/object/apply:os.system ['touch pwned-by-yaml']\n"),
    ),
    Case(
        "unknown-top-key",
        "a misspelt top-level key",
        "ConfigError",
        ("teachr: unknown key 'teachr'", "did you mean 'teacher'"),
        _with(_set("teachr", {})),
    ),
    Case(
        "unknown-pass-key",
        "a misspelt pass setting",
        "ConfigError",
        ("passes[0].distill.epocs: unknown key 'epocs' (did you mean 'epochs'?)",),
        _with(_set("passes.0", {"distill": {"epocs": 3}})),
    ),
    Case(
        "unknown-pass",
        "a pass name that does not exist",
        "ConfigError",
        ("passes[1]: unknown pass 'quantise' (did you mean 'quantize'?)",),
        _with(_set("passes.1", {"quantise": {}})),
    ),
    Case(
        "bad-literal",
        "precision int4",
        "ConfigError",
        ("passes[1].quantize.precision: 'int4' is not one of int8, fp16, fp32",),
        _with(_set("passes.1", {"quantize": {"precision": "int4"}})),
    ),
    Case(
        "wrong-type",
        "epochs given as words",
        "ConfigError",
        ("passes[0].distill.epochs", "'ten'"),
        _with(_set("passes.0", {"distill": {"epochs": "ten"}})),
    ),
    Case(
        "out-of-range",
        "negative learning rate",
        "ConfigError",
        ("passes[0].distill.optimizer.lr: -1 is out of range",),
        _with(_set("passes.0", {"distill": {"optimizer": {"lr": -1}}})),
    ),
    Case(
        "missing-teacher",
        "no teacher section",
        "ConfigError",
        ("teacher: required key is missing",),
        _with(_set("teacher", _DELETE)),
    ),
    Case(
        "missing-passes",
        "no passes",
        "ConfigError",
        ("passes: required key is missing",),
        _with(_set("passes", _DELETE)),
    ),
    Case(
        "empty-passes",
        "an empty pass list",
        "ConfigError",
        ("passes: must be a non-empty list",),
        _with(_set("passes", [])),
    ),
    Case(
        "unknown-arch",
        "a teacher architecture that is not in the zoo",
        "ConfigError",
        ("teacher.arch: unknown architecture 'resnet50'",),
        _with(_set("teacher.arch", "resnet50")),
    ),
    Case(
        "missing-checkpoint",
        "teacher.checkpoint points nowhere",
        "ConfigError",
        ("teacher.checkpoint: file not found", "relative paths are read from the folder of model.yaml"),
        _with(_set("teacher.checkpoint", "nope.pt")),
    ),
    Case(
        "missing-data-file",
        "data.path of an npz that does not exist",
        "ConfigError",
        ("data.path: not found",),
        _with(_set("data", {"source": "npz", "path": "missing.npz"})),
    ),
    Case(
        "callable-without-name",
        "source callable without callable:",
        "ConfigError",
        ("source 'callable' needs callable:",),
        _with(_set("data", {"source": "callable"})),
    ),
    Case(
        "bad-params",
        "teacher.params the builder does not take",
        "ModelError",
        ("teacher: cannot build resnet", "check teacher.params"),
        _with(_set("teacher.params", {"depth": 9})),
    ),
    Case(
        "checkpoint-shapes",
        "a checkpoint trained with another width",
        "ModelError",
        ("does not fit teacher.arch/params", "with other shapes", "set teacher.params"),
        _with(_teacher_ckpt(lambda p: torch.save(zoo.build("resnet", {**TINY_TEACHER, "width": 16}).state_dict(), p))),
    ),
    Case(
        "checkpoint-keys",
        "a checkpoint of a deeper network",
        "ModelError",
        ("unexpected", "set teacher.params"),
        _with(_teacher_ckpt(lambda p: torch.save(zoo.build("resnet", {**TINY_TEACHER, "depth": 14}).state_dict(), p))),
    ),
    Case(
        "checkpoint-pickle",
        "a checkpoint holding code (malicious pickle)",
        "ModelError",
        ("refused to load: the file holds Python objects", "re-save it"),
        _with(_teacher_ckpt(_evil)),
    ),
    Case(
        "checkpoint-garbage",
        "a checkpoint that is not a torch file",
        "ModelError",
        ("cannot read",),
        _with(_teacher_ckpt(lambda p: p.write_bytes(b"not a checkpoint"))),
    ),
    Case(
        "input-shape",
        "data.input_shape does not fit the teacher",
        "ModelError",
        ("does not accept inputs of data.input_shape [3, 32, 32]",),
        _with(_set("data.input_shape", [3, 32, 32])),
    ),
    Case(
        "num-classes",
        "data.num_classes differs from the teacher's outputs",
        "ModelError",
        ("expected [N, 5] (data.num_classes)",),
        _with(_set("data.num_classes", 5)),
    ),
    Case(
        "empty-dataset",
        "an npz with zero training images",
        "DataError",
        ("train split has zero samples",),
        _with(_data_npz(n_train=0)),
    ),
    Case(
        "labels-range",
        "labels beyond num_classes",
        "DataError",
        ("labels range over 0..", "data.num_classes is 10"),
        _with(_data_npz(labels=20)),
    ),
    Case(
        "data-shape",
        "images of another size than input_shape",
        "DataError",
        ("have shape [1, 32, 32] but data.input_shape is [1, 28, 28]",),
        _with(_data_npz(shape=(1, 32, 32))),
    ),
    Case(
        "calibration-too-big",
        "more calibration images than the training split has",
        "DataError",
        ("calibration.samples is 5000 but the training split holds only 512",),
        _with(_set("calibration", {"samples": 5000})),
    ),
    Case(
        "image-folder-layout",
        "an image folder without test/",
        "DataError",
        ("no 'test' folder",),
        _with(_image_folder_without_test),
    ),
    Case(
        "callable-import",
        "a data callable that cannot be imported",
        "DataError",
        ("cannot import 'no_such_mod_xyz:load'",),
        _with(_set("data", {"source": "callable", "callable": "no_such_mod_xyz:load"})),
    ),
    Case(
        "custom-arch-import",
        "a student builder module that does not exist",
        "ModelError",
        ("student.arch: cannot import 'no_such_pkg_xyz.nets:small'", "PYTHONPATH"),
        _with(_set("student", {"arch": "no_such_pkg_xyz.nets:small"})),
    ),
    Case(
        "export-unsupported-op",
        "a student using an operator ONNX cannot express",
        "ExportError",
        ("student.onnx: operator 'aten::kthvalue' (called in KthNet.forward) has no ONNX translation", "lower.opset"),
        _with(_student_with_unsupported_op),
        creates_run=True,
    ),
    Case(
        "order-quantize-after-lower",
        "quantize placed after lower",
        "PipelineError",
        ("passes[1].quantize cannot run after the student was lowered", "move quantize earlier"),
        _with(_set("passes", [{"lower": {}}, {"quantize": {}}])),
    ),
    Case(
        "order-profile-without-lower",
        "profile with nothing lowered",
        "PipelineError",
        ("passes[1].profile needs lowered", "put lower before it"),
        _with(_set("passes", [{"distill": {"epochs": 1}}, {"profile": {}}])),
    ),
    Case(
        "no-student",
        "distill with no student",
        "PipelineError",
        ("needs student", "give student: in model.yaml"),
        _with(_set("student", _DELETE)),
    ),
    Case(
        "unknown-target",
        "a misspelt target",
        "TargetError",
        ("unknown target 'jetsn' (did you mean 'jetson'?)",),
        _with(lambda c, f: None, "--target", "jetsn"),
    ),
    Case(
        "bad-target-file",
        "a target file with an unknown backend",
        "ConfigError",
        ("backends[0]: 'coreml' is not one of onnx, tensorrt, tflite",),
        _target_file("name: mine\nbackends: [coreml]\nprecisions: [fp32]\n"),
    ),
    Case(
        "bad-override",
        "--set without a value",
        "ConfigError",
        ("expected KEY=VALUE",),
        _with(lambda c, f: None, "--set", "passes[0]distill"),
    ),
    Case(
        "resume-nothing",
        "--resume with no earlier run",
        "PipelineError",
        ("--resume: no earlier run",),
        _with(lambda c, f: None, "--resume"),
    ),
    Case(
        "resume-not-a-run",
        "--resume of a folder that is not a run",
        "PipelineError",
        ("not an edgekd run folder",),
        _resume_elsewhere,
    ),
    Case(
        "nan-loss",
        "a learning rate so large the loss explodes",
        "TrainingError",
        ("exploded", "lower the learning rate"),
        _with(_set("passes.0", {"distill": {"epochs": 1, "optimizer": {"lr": 1e30}, "augment": False}})),
        creates_run=True,
    ),
    Case(
        "disk-full",
        "the disk fills up while writing (file-size limit 20 KB)",
        "StorageError",
        ("cannot write", "file too large", "--resume"),
        _with(lambda c, f: None),
        creates_run=True,
        fsize_limit=20_000,
    ),
    Case(
        "tflite-extra-missing",
        "compile for a TFLite target (raspberry-pi-4) without the tflite extra installed",
        "BackendUnavailable",
        ("litert-torch is not installed", "pip install 'edgekd[tflite]'"),
        _without_tflite_extra,
        isolated=True,
    ),
    Case(
        "config-not-found",
        "compile of a file that does not exist",
        "ConfigError",
        ("nope.yaml: file not found", "edgekd init"),
        lambda f: ["compile", str(f / "nope.yaml")],
    ),
    Case(
        "init-overwrite", "edgekd init over an existing file", "ConfigError", ("already exists", "--force"), _init_twice
    ),
    Case(
        "report-unfinished",
        "edgekd report of a folder without result.json",
        "ConfigError",
        ("no result.json",),
        _report_unfinished,
    ),
    Case(
        "profile-suffix",
        "edgekd profile of a file that is not a model",
        "ProfilingError",
        ("only .onnx (ONNX Runtime) and .tflite (LiteRT) files",),
        _profile_text_file,
    ),
    Case(
        "profile-broken-onnx",
        "edgekd profile of a corrupt .onnx",
        "ProfilingError",
        ("latency runner failed",),
        _profile_broken_onnx,
    ),
    Case(
        "prune-guard-unmet",
        "constraints.max_accuracy_drop that no pruned student meets",
        "AccuracyGuardError",
        (
            "prune: cannot meet constraints.max_accuracy_drop 0.5 points",
            "the best reached was",
            "student.pruned.safetensors",
            "report.failed.md",
        ),
        _prune_guard_unmet,
        creates_run=True,
        exit_code=3,  # a constraint not met
    ),
    Case(
        "size-constraint-unmet",
        "constraints.max_size_mb that the deployable artifact exceeds",
        "ConstraintError",
        ("constraints not met: max_size_mb", "> limit 1e-06", "result.failed.json", "report.failed.md"),
        _size_unmet,
        creates_run=True,
        exit_code=3,
    ),
    Case(
        "teacher-tuple-output",
        "a user builder whose model's forward returns a tuple (logits, probabilities)",
        "ModelError",
        ("teacher returns a tuple from forward, not a logits tensor of shape [N, 10]", "fix:"),
        _tuple_teacher,
    ),
    Case(
        "no-code-builder",
        "compile --no-code of a config whose teacher builder is os:system",
        "ConfigError",
        ("teacher.arch: names code to import and run ('os:system')", "--no-code refuses"),
        _with(lambda c, f: c["teacher"].update(arch="os:system", params={"command": "true"}), "--no-code"),
    ),
    Case(
        "image-folder-unreadable",
        "an image folder whose test images cannot be read (broken files saved as .png)",
        "DataError",
        ("test: none of its 8 image file(s) can be read (first:", "0.png", "replace or remove the broken files"),
        _with(_unreadable_images),
    ),
    Case(
        "taps-not-found",
        "teacher.taps names a module the teacher does not have",
        "ModelError",
        ("teacher.taps.features: 'layer9' is not a module of CifarResNet", "name one of its modules"),
        _with(
            lambda c, f: (
                c["teacher"].update(taps={"features": "layer9"}),
                c.update(passes=[{"search": {"population": 2, "iterations": 2, "proxy": "diswot"}}, {"report": {}}]),
            )
        ),
        creates_run=True,
    ),
    Case(
        "qat-untraceable",
        "QAT of a student whose forward branches on the data (torch.fx cannot trace it)",
        "ModelError",
        ("torch.fx", "method: ptq"),
        _with(_qat_untraceable),
        creates_run=True,
    ),
    Case(
        "prune-ignore-unknown",
        "prune.ignore names a layer the student does not have",
        "ConfigError",
        ("passes[0].prune.ignore: no layer 'fc2' in the student",),
        _with(_set("passes.0", {"prune": {"ignore": ["fc2"]}})),
    ),
    Case(
        "recovery-feature-term",
        "a feature distillation term in prune.recovery.loss",
        "ConfigError",
        ("passes[0].prune.recovery.loss", "recovery uses logit terms only"),
        _with(_set("passes.0", {"prune": {"recovery": {"loss": {"fitnet": 1.0}}}})),
    ),
]


def markdown_table() -> str:
    lines = [
        "# Reliability catalogue",
        "",
        "Generated from `tests/reliability/cases.py` by `python -m tests.reliability.cases`;",
        "`tests/reliability/test_catalogue.py` runs every case through the CLI and checks that this file is current.",
        "Every case must exit non-zero with `error [Type]: ...` naming the file/key and the fix, print no traceback,",
        "and leave no run looking complete (no result.json / report.md; config errors create no run folder).",
        "",
        f"{len(CASES)} cases.",
        "",
        "| case | what the user did | error | the message contains |",
        "|---|---|---|---|",
    ]
    for c in CASES:
        frags = "; ".join(f"`{f}`" for f in c.expect).replace("|", "\\|")
        lines.append(f"| {c.id} | {c.situation} | {c.error} | {frags} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
