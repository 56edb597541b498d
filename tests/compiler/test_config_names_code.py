"""A model.yaml that names code is code: --no-code refuses it before anything is imported, and every builder a
compile imports is recorded (file and sha256) and keys the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgekd
from edgekd.cli import main
from edgekd.core.errors import ConfigError, ModelError
from tests.helpers import TINY_STUDENT, tiny_config, write_config


def _shell_config(tmp_path: Path, marker: Path) -> Path:
    cfg = tiny_config(tmp_path, passes=[{"distill": {"epochs": 1}}])
    cfg["teacher"] = {"arch": "os:system", "params": {"command": f"touch {marker}"}}
    return write_config(tmp_path, cfg)


def test_a_builder_runs_at_build_time_without_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ModelError):  # os.system returns an int, not a module: but the command has run
        edgekd.compile(_shell_config(tmp_path, marker), out=tmp_path / "runs", quiet=True)
    assert marker.exists()


def test_no_code_refuses_before_importing_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    path = _shell_config(tmp_path, marker)
    with pytest.raises(ConfigError, match=r"teacher\.arch: names code to import and run \('os:system'\)"):
        edgekd.compile(path, out=tmp_path / "runs", quiet=True, allow_code=False)
    assert main(["compile", str(path), "--out", str(tmp_path / "runs"), "--no-code", "-q"]) == 2
    assert "--no-code refuses configs that import modules outside edgekd" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_imported_builders_are_recorded_and_key_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "code"
    pkg.mkdir()
    builder = pkg / "mystudents.py"
    builder.write_text("from edgekd.models import zoo\n\ndef small(**p):\n    return zoo.build('resnet', p)\n")
    monkeypatch.syspath_prepend(str(pkg))
    cfg = tiny_config(tmp_path, passes=[{"distill": {"epochs": 1, "batch_size": 64}}])
    cfg["student"] = {"arch": "mystudents:small", "params": dict(TINY_STUDENT)}
    path = write_config(tmp_path, cfg)
    first = edgekd.compile(path, out=tmp_path / "runs", quiet=True)
    (code,) = json.loads(first.result_path.read_text())["code"]
    assert code["key"] == "student.arch" and code["callable"] == "mystudents:small"
    assert Path(code["file"]) == builder and len(code["sha256"]) == 64
    with pytest.raises(ConfigError):  # the refusal names user code, not edgekd's own
        edgekd.compile(path, out=tmp_path / "runs", quiet=True, allow_code=False)
    builder.write_text(builder.read_text() + "# edited\n")
    second = edgekd.compile(path, out=tmp_path / "runs", quiet=True)
    statuses = {r["pass"]: r["status"] for r in json.loads(second.manifest_path.read_text())["passes"]}
    assert statuses["distill"] == "ran"  # the builder changed: nothing is replayed from the cache


def test_a_config_without_student_names_only_the_teacher(tmp_path: Path) -> None:
    from edgekd.compiler.plan import load_model_config

    cfg = tiny_config(tmp_path)
    del cfg["student"]
    cfg["data"] = {**cfg["data"], "source": "callable", "callable": "mydata:load"}
    assert load_model_config(write_config(tmp_path, cfg)).code_references() == [("data.callable", "mydata:load")]


def test_only_a_zoo_teacher_without_checkpoint_is_warned_about_as_random(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "myteachers.py").write_text(
        "from edgekd.models import zoo\n\ndef pretrained(**p):\n    return zoo.build('resnet', p)  # its own weights\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    passes = [{"distill": {"epochs": 1, "batch_size": 64}}]
    for arch, warned in (("myteachers:pretrained", False), ("resnet", True)):
        cfg = tiny_config(tmp_path / arch.replace(":", "-"), passes=passes)
        cfg["teacher"] = {"arch": arch, "params": cfg["teacher"]["params"]}
        edgekd.compile(write_config(tmp_path / arch.replace(":", "-"), cfg), out=tmp_path / "runs", quiet=True)
        assert ("the teacher is randomly initialised" in capsys.readouterr().err) is warned, arch
