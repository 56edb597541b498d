"""A release installs like one: the wheel carries the target profiles and the bundled data, and an installed
edgekd lists its targets and compiles from a folder outside the repository.

The wheel is installed with ``pip install --no-deps --target`` into a temporary folder put first on PYTHONPATH
(its dependencies come from the test environment), so the installed files, not the checkout, are what runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, tiny_config


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("release")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(REPO)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    (wheel,) = (root / "dist").glob("edgekd-*.whl")
    site = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=600)
    return {**os.environ, "PYTHONPATH": str(site)}


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_the_installed_package_lists_the_shipped_targets(installed: dict[str, str], tmp_path: Path) -> None:
    where = _run(installed, tmp_path, "-c", "import edgekd; print(edgekd.__file__)")
    assert where.stdout.startswith(installed["PYTHONPATH"]), where  # the wheel's files, not the checkout
    r = _run(installed, tmp_path, "-m", "edgekd", "targets", "--json")
    assert r.returncode == 0, r.stderr
    assert {t["name"] for t in json.loads(r.stdout)} == {"x86-cpu", "jetson-orin-nano", "raspberry-pi-4"}


def test_the_installed_package_compiles_from_another_folder(installed: dict[str, str], tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, passes=[{"distill": {"epochs": 1, "batch_size": 64}}, {"lower": {}}])
    cfg["data"] = {**cfg["data"], "source": "fashion-mnist", "subset": True}  # the subset shipped in the wheel
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(cfg))
    r = _run(installed, tmp_path, "-m", "edgekd", "compile", "model.yaml", "--target", "x86-cpu", "--json", "-q")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["artifacts"]["onnx"]["parity"]["passed"]
    assert "subset" in result["data"]["source"]
