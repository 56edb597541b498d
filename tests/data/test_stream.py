"""Streamed image sources: image folders and file lists read from disk per batch, never held in memory whole,
giving exactly what the in-memory path gives."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import edgekd
import edgekd.data as data_module
import edgekd.data.sources as sources_module
import edgekd.data.stream as stream_module
from edgekd.config.model import CalibrationConfig, DataConfig
from edgekd.core.errors import DataError
from edgekd.data import load_data
from edgekd.data.sources import FASHION_MNIST_SUBSET
from edgekd.data.stream import ImageFiles, batches
from tests.helpers import tiny_config, write_config

NORMALIZE = {"mean": [0.286], "std": [0.353]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real Fashion-MNIST images (the bundled subset) as PNG files in train/<class>/ and test/<class>/."""
    from PIL import Image

    root = tmp_path_factory.mktemp("fashion-folder")
    with np.load(FASHION_MNIST_SUBSET) as f:
        parts = {"train": (f["x_train"][:300], f["y_train"][:300]), "test": (f["x_test"][:120], f["y_test"][:120])}
    for split, (x, y) in parts.items():
        for cls in range(10):
            (root / split / f"c{cls}").mkdir(parents=True)
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            Image.fromarray(np.asarray(img).reshape(28, 28)).save(root / split / f"c{label}" / f"{i:04d}.png")
    return root


def _cfg(folder: Path, **kw: object) -> DataConfig:
    base = {"source": "image-folder", "path": folder, "input_shape": (1, 28, 28), "num_classes": 10}
    return DataConfig.model_validate({**base, **kw})


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    seen: list[Path] = []
    real = stream_module.decode

    def counting(path: Path, shape: tuple[int, int, int], resize: int | None = None) -> np.ndarray:
        seen.append(path)
        return real(path, shape, resize)

    for module in (stream_module, sources_module, data_module):
        monkeypatch.setattr(module, "decode", counting)
    return seen


def test_a_streamed_folder_gives_the_images_the_in_memory_path_gives(folder: Path) -> None:
    mem = load_data(_cfg(folder, stream=False, val_fraction=0.2), CalibrationConfig(samples=8), folder)
    disk = load_data(_cfg(folder, stream=True, val_fraction=0.2), CalibrationConfig(samples=8), folder)
    assert disk.streamed and not mem.streamed and isinstance(disk.train.x, ImageFiles)
    assert "streamed from disk (data.stream: true" in disk.source and disk.describe()["streamed"] is True
    for name in ("train", "val", "test"):
        a, b = getattr(mem, name), getattr(disk, name)
        assert torch.equal(a.y, b.y) and b.x.shape == a.x.shape
        assert torch.allclose(b.x[:], a.x, atol=1e-6)  # same split membership, order, pixels and normalisation
    assert disk.mean == pytest.approx(mem.mean, abs=1e-6) and disk.std == pytest.approx(mem.std, abs=1e-6)
    assert torch.allclose(disk.calibration.x, mem.calibration.x) and not disk.calibration.streamed
    assert disk.preprocessing == mem.preprocessing
    assert disk.content_sha256() != mem.content_sha256()  # named by files, not pixels
    again = load_data(_cfg(folder, stream=True, val_fraction=0.2), CalibrationConfig(samples=8), folder)
    assert again.content_sha256() == disk.content_sha256()


def test_streaming_decodes_only_what_is_asked_for(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _count_decodes(monkeypatch)
    b = load_data(_cfg(folder, stream=True, normalize=NORMALIZE), CalibrationConfig(samples=8), folder)
    assert len(seen) == 8  # the calibration images only: the splits stay on disk
    x = b.train.x[torch.tensor([5, 1, 7])]
    assert x.shape == (3, 1, 28, 28) and len(seen) == 11
    part = b.train.subset(torch.arange(10))
    assert len(part) == 10 and part.streamed and len(seen) == 11  # a subset decodes nothing
    seen.clear()
    load_data(_cfg(folder, stream=True), CalibrationConfig(samples=8), folder)  # data.normalize not given
    assert len(seen) == 8 + 300  # 300 training files < 1000: all of them, once, for mean and std


def test_auto_streams_only_above_the_memory_threshold(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not load_data(_cfg(folder), CalibrationConfig(samples=2), folder).streamed  # 420 images: 1.3 MB
    monkeypatch.setattr(data_module, "STREAM_ABOVE_BYTES", 1_000_000)
    b = load_data(_cfg(folder), CalibrationConfig(samples=2), folder)
    assert b.streamed and "decoded they would take 0.0 GiB" in b.source


def test_the_dataloader_workers_decode_the_batches_in_order(folder: Path) -> None:
    b = load_data(_cfg(folder, stream=True, normalize=NORMALIZE), CalibrationConfig(samples=2), folder)
    order = [torch.tensor([3, 0, 9]), torch.tensor([4, 4]), torch.tensor([8])]
    for workers in (0, 2):
        got = list(batches(b.train.x, order, workers))
        assert [tuple(g.shape) for g in got] == [(3, 1, 28, 28), (2, 1, 28, 28), (1, 1, 28, 28)]
        for g, idx in zip(got, order, strict=True):
            assert torch.equal(g, b.train.x[idx])


def test_a_file_that_breaks_after_listing_is_an_error_naming_it(tmp_path: Path, folder: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(folder, root)
    b = load_data(_cfg(root, stream=True, normalize=NORMALIZE), CalibrationConfig(samples=1), root)
    victim = b.train.x.files[4]
    victim.write_bytes(victim.read_bytes()[:60])  # the PNG header survives, the pixels do not
    with pytest.raises(DataError, match=rf"{victim.name}: cannot be read while streaming") as e:
        b.train.x[2:6]
    assert "replace or remove the file" in e.value.fix


def test_unreadable_files_are_left_out_when_listed(tmp_path: Path, folder: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(folder, root)
    (root / "train" / "c0" / "broken.png").write_bytes(b"not an image")
    b = load_data(_cfg(root, stream=True, normalize=NORMALIZE, val_fraction=0.0), CalibrationConfig(samples=1), root)
    assert len(b.train) == 300
    assert any("1 image file(s) could not be read" in n and "broken.png" in n for n in b.notes)


def test_stream_true_needs_an_image_source() -> None:
    with pytest.raises(ValueError, match="stream: true reads image files from disk; source 'npz'"):
        DataConfig.model_validate({"source": "npz", "path": "x.npz", "stream": True})


def test_a_streamed_compile_trains_the_same_student_as_in_memory(tmp_path: Path, folder: Path) -> None:
    """Distill (pad-crop and flip augmentation on the decoded batches), INT8 and lowering over a streamed folder
    decoded by a DataLoader worker process give the very files the in-memory compile gives."""
    out = {}
    for mode, stream in (("memory", False), ("disk", True)):
        work = tmp_path / mode
        data = {"source": "image-folder", "path": str(folder), "input_shape": [1, 28, 28], "num_classes": 10,
                "normalize": NORMALIZE, "stream": stream, "workers": 1}  # fmt: skip
        passes = [{"distill": {"epochs": 1, "batch_size": 64}}, {"quantize": {"precision": "int8"}},
                  {"lower": {"parity": {"samples": 64, "min_top1": 80.0, "min_cosine": 0.9}}}]  # fmt: skip
        cfg = tiny_config(work, data=data, passes=passes)
        r = edgekd.compile(write_config(work, cfg), target="x86-cpu", out=work / "runs", quiet=True)
        res = json.loads(r.result_path.read_text())
        onnx = hashlib.sha256((r.run_dir / "student.onnx").read_bytes()).hexdigest()
        out[mode] = (res["student"]["distill"]["val_accuracy"], res["artifacts"]["onnx_int8"]["accuracy"], onnx)
        assert res["data"]["streamed"] is stream
    assert out["disk"] == out["memory"]


def test_resize_keeps_the_aspect_ratio_and_cuts_the_centre(tmp_path: Path) -> None:
    """data.resize: the shorter side to 16, then the centre 12 x 12, in memory and streamed alike."""
    from PIL import Image

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / split / "a" / "0.png")
    want = Image.fromarray(pixels).resize((32, 16), Image.Resampling.BICUBIC).crop((10, 2, 22, 14))
    want_x = np.asarray(want, dtype=np.float32).transpose(2, 0, 1) / 255
    for stream in (False, True):
        cfg = DataConfig.model_validate({"source": "image-folder", "path": tmp_path, "input_shape": (3, 12, 12),
                                         "num_classes": 2, "val_fraction": 0.0, "resize": 16, "stream": stream,
                                         "normalize": {"mean": [0, 0, 0], "std": [1, 1, 1]}})  # fmt: skip
        b = load_data(cfg, CalibrationConfig(samples=1), tmp_path)
        assert np.allclose(b.test.x[:].numpy()[0], want_x, atol=1e-6)
        assert b.preprocessing["resize"] == {"shorter_side": 16, "method": "PIL Image.resize (bicubic), aspect ratio "
                                             "kept", "crop": {"center": [12, 12]}}  # fmt: skip


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": "image-folder", "path": "x", "input_shape": (3, 224, 224), "resize": 200},
         r"resize 200 is smaller than the crop \[224, 224\]"),
        ({"source": "npz", "path": "x.npz", "resize": 32}, "resize applies to image files"),
    ],
)  # fmt: skip
def test_bad_resize_is_refused(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DataConfig.model_validate(data)


def test_two_processes_train_on_a_streamed_folder(tmp_path: Path, folder: Path) -> None:
    """DDP ranks get the file list (not the images) and each decodes its own shard's batches."""
    import os
    import subprocess
    import sys

    from tests.helpers import REPO

    data = {"source": "image-folder", "path": str(folder), "input_shape": [1, 28, 28], "num_classes": 10,
            "normalize": NORMALIZE, "stream": True, "workers": 1}  # fmt: skip
    cfg = tiny_config(tmp_path, data=data, passes=[{"distill": {"epochs": 1, "batch_size": 32}}])
    cmd = [sys.executable, "-m", "edgekd", "compile", str(write_config(tmp_path, cfg)), "--out",
           str(tmp_path / "runs"), "--nproc", "2", "--json", "-q"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["data"]["streamed"] is True and res["student"]["distill"]["distributed"]["processes"] == 2
    assert res["student"]["distill"]["distributed"]["max_weight_difference_between_ranks"] < 1e-6
