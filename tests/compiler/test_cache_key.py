"""The cache replays a pass only for the same inputs: the data's content, the predictor file and library
versions key it too, and what it replays is said to come from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import edgekd
from edgekd.compiler.cache import input_key
from edgekd.compiler.plan import load_model_config
from edgekd.config.target import load_target
from tests.helpers import tiny_config, write_config


def _npz(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 255, (200, 1, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 200),
        x_test=rng.integers(0, 255, (64, 1, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 64),
    )
    return path


def _statuses(res: edgekd.CompileResult) -> dict[str, str]:
    return {r["pass"]: r["status"] for r in json.loads(res.manifest_path.read_text())["passes"]}


def test_new_data_under_the_same_path_runs_again_and_replays_are_labelled(tmp_path: Path) -> None:
    data = _npz(tmp_path / "images.npz", seed=0)
    cfg = tiny_config(tmp_path, passes=[{"distill": {"epochs": 1, "batch_size": 64}}])
    cfg["data"] = {"source": "npz", "path": data.name, "input_shape": [1, 28, 28], "num_classes": 10}
    path = write_config(tmp_path, cfg)
    first = edgekd.compile(path, out=tmp_path / "runs", quiet=True)
    again = edgekd.compile(path, out=tmp_path / "runs", quiet=True)
    assert _statuses(first)["distill"] == "ran" and _statuses(again)["distill"] == "cached"
    replayed = json.loads(again.result_path.read_text())["notes"]
    assert any(n.startswith("distill: restored from the cache, so its figures") for n in replayed), replayed
    assert not any("restored from the cache" in n for n in json.loads(first.result_path.read_text())["notes"])
    _npz(data, seed=1)  # same file name, same shapes, other images
    third = edgekd.compile(path, out=tmp_path / "runs", quiet=True)
    assert _statuses(third)["distill"] == "ran"


def test_the_predictor_file_and_library_versions_are_in_the_key(tmp_path: Path) -> None:
    cfg = load_model_config(write_config(tmp_path, tiny_config(tmp_path)))
    target = load_target("x86-cpu").model_copy(update={"predictor": str(tmp_path / "p.json")})
    base = input_key(cfg, target, data_sha256="d", runtimes={"onnxruntime": "1.32.0"})
    (tmp_path / "p.json").write_text("{}")
    with_file = input_key(cfg, target, data_sha256="d", runtimes={"onnxruntime": "1.32.0"})
    (tmp_path / "p.json").write_text('{"types": {}}')
    edited = input_key(cfg, target, data_sha256="d", runtimes={"onnxruntime": "1.32.0"})
    other_ort = input_key(cfg, target, data_sha256="d", runtimes={"onnxruntime": "1.31.0"})
    other_data = input_key(cfg, target, data_sha256="e", runtimes={"onnxruntime": "1.32.0"})
    assert len({base, with_file, edited, other_ort, other_data}) == 5
