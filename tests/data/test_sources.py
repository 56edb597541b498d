"""Data sources and the split/normalise/check step."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgekd.config.model import CalibrationConfig, DataConfig
from edgekd.core.errors import DataError
from edgekd.data import load_data
from edgekd.data.sources import FASHION_MNIST_SUBSET


def _cfg(**kw: object) -> DataConfig:
    return DataConfig.model_validate(kw)


def test_bundled_subset_is_balanced_and_real() -> None:
    with np.load(FASHION_MNIST_SUBSET) as f:
        assert f["x_train"].shape == (5000, 1, 28, 28) and f["x_test"].shape == (2000, 1, 28, 28)
        assert np.bincount(f["y_train"]).tolist() == [500] * 10
        assert 60 < f["x_train"].mean() < 90  # Fashion-MNIST's mean pixel is ~73


def test_subset_split_sizes_and_normalisation(tmp_path: Path) -> None:
    b = load_data(_cfg(subset=True, val_fraction=0.1), CalibrationConfig(samples=100), tmp_path)
    assert (len(b.train), len(b.val), len(b.test), len(b.calibration)) == (4500, 500, 2000, 100)
    assert abs(float(b.train.x.mean())) < 0.1 and 0.9 < float(b.train.x.std()) < 1.1
    assert "subset" in b.source and b.notes
    # calibration comes from the training split, never from the test split
    assert b.calibration.x.data_ptr() == b.train.x.data_ptr()


def _npz(path: Path, n_train: int = 20, n_test: int = 10, labels_max: int = 3, shape=(3, 8, 8)) -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 255, (n_train, *shape), dtype=np.uint8),
        y_train=rng.integers(0, labels_max + 1, n_train),
        x_test=rng.integers(0, 255, (n_test, *shape), dtype=np.uint8),
        y_test=rng.integers(0, labels_max + 1, n_test),
    )
    return path


def test_npz_source_computes_normalisation(tmp_path: Path) -> None:
    cfg = _cfg(source="npz", path=_npz(tmp_path / "d.npz"), input_shape=(3, 8, 8), num_classes=4, val_fraction=0.0)
    b = load_data(cfg, CalibrationConfig(samples=5), tmp_path)
    assert len(b.mean) == 3 and any("computed from the training split" in n for n in b.notes)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"n_train": 0}, "train split has zero samples"),
        ({"labels_max": 9}, r"train labels range over 0\.\.[4-9] but data.num_classes is 4"),
        ({"shape": (1, 8, 8)}, r"have shape \[1, 8, 8\] but data.input_shape is \[3, 8, 8\]"),
    ],
)
def test_bad_npz_data_is_refused(tmp_path: Path, kw: dict, message: str) -> None:
    cfg = _cfg(source="npz", path=_npz(tmp_path / "d.npz", **kw), input_shape=(3, 8, 8), num_classes=4)
    with pytest.raises(DataError, match=message):
        load_data(cfg, CalibrationConfig(samples=2), tmp_path)


def test_npz_missing_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 1, 4, 4)))
    with pytest.raises(DataError, match="missing arrays x_train, y_train, x_test, y_test"):
        load_data(_cfg(source="npz", path=tmp_path / "d.npz"), CalibrationConfig(), tmp_path)


def test_calibration_larger_than_train_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"calibration\.samples is 9999 but the training split holds only 100"):
        load_data(_cfg(subset=True, train_limit=100), CalibrationConfig(samples=9999), tmp_path)


def test_image_folder_source(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{i}.png"
                )
    cfg = _cfg(source="image-folder", path=tmp_path, input_shape=(3, 8, 8), num_classes=2, val_fraction=0.0)
    b = load_data(cfg, CalibrationConfig(samples=2), tmp_path)
    assert b.train.x.shape == (6, 3, 8, 8) and sorted(b.test.y.tolist()) == [0, 0, 0, 1, 1, 1]
    assert "classes: cat, dog" in b.source


def _folder(root: Path, per_class: int = 3) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")


def test_image_folder_skips_unreadable_files_and_says_so(tmp_path: Path) -> None:
    """A truncated or mislabelled file ended in PIL's raw traceback; now it is skipped, counted and named."""
    _folder(tmp_path)
    (tmp_path / "train" / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    cfg = _cfg(source="image-folder", path=tmp_path, input_shape=(3, 8, 8), num_classes=2, val_fraction=0.0)
    b = load_data(cfg, CalibrationConfig(samples=2), tmp_path)
    assert len(b.train) == 6
    (note,) = [n for n in b.notes if "could not be read" in n]
    assert "1 image file(s) could not be read and were skipped" in note and "broken.png" in note
    assert b.preprocessing["output"]["classes"] == ["cat", "dog"]
    assert b.preprocessing["resize"]["size"] == [8, 8]


def test_an_image_folder_split_with_no_readable_file_is_an_error_naming_one(tmp_path: Path) -> None:
    _folder(tmp_path)
    for f in (tmp_path / "test").rglob("*.png"):
        f.write_bytes(b"garbage")
    cfg = _cfg(source="image-folder", path=tmp_path, input_shape=(3, 8, 8), num_classes=2, val_fraction=0.0)
    with pytest.raises(DataError, match=r"test: none of its 6 image file\(s\) can be read \(first: .*0\.png"):
        load_data(cfg, CalibrationConfig(samples=2), tmp_path)


def test_imagenet_style_folder_takes_val_as_the_test_split(tmp_path: Path) -> None:
    """ImageNet's layout (train/<wnid>/, val/<wnid>/) was refused for want of a test/ folder."""
    _folder(tmp_path)
    (tmp_path / "test").rename(tmp_path / "val")
    (tmp_path / "val" / "dog" / "0.png").unlink()
    cfg = _cfg(source="image-folder", path=tmp_path, input_shape=(3, 8, 8), num_classes=2, val_fraction=0.0)
    b = load_data(cfg, CalibrationConfig(samples=2), tmp_path)
    assert len(b.train) == 6 and sorted(b.test.y.tolist()) == [0, 0, 0, 1, 1]
    assert "ImageNet-style: val/ is the test split" in b.source
    (tmp_path / "val").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="no 'test' folder") as e:
        load_data(cfg, CalibrationConfig(samples=2), tmp_path)
    assert "val/<class>" in e.value.fix


def test_an_unlabelled_folder_of_images_is_read_with_teacher_labels(tmp_path: Path) -> None:
    _folder(tmp_path)
    for split in ("train", "test"):  # flatten: the images straight in train/ and test/
        for f in list((tmp_path / split).rglob("*.png")):
            f.rename(tmp_path / split / f"{f.parent.name}-{f.name}")
        for d in ("cat", "dog"):
            (tmp_path / split / d).rmdir()
    cfg = _cfg(source="image-folder", path=tmp_path, input_shape=(3, 8, 8), num_classes=2, val_fraction=0.0)
    with pytest.raises(DataError, match="train: images but no class folders") as e:
        load_data(cfg, CalibrationConfig(samples=2), tmp_path)
    assert "data.labels: teacher" in e.value.fix
    cfg = _cfg(source="image-folder", path=tmp_path, input_shape=(3, 8, 8), num_classes=2, val_fraction=0.0,
               labels="teacher")  # fmt: skip
    b = load_data(cfg, CalibrationConfig(samples=2), tmp_path)
    assert b.unlabelled and len(b.train) == 6 and b.test.y.tolist() == [-1] * 6
    assert "no class folders: unlabelled" in b.source


def _image_list(root: Path, rows: list[str]) -> Path:
    _folder(root / "img")
    (root / "list.csv").write_text("path,split,label\n" + "\n".join(rows) + "\n")
    return root / "list.csv"


def test_image_list_csv_names_files_splits_and_classes(tmp_path: Path) -> None:
    rows = [f"img/train/{c}/{i}.png,train,{c}" for c in ("dog", "cat") for i in range(3)]
    rows += [f"{tmp_path}/img/test/cat/{i}.png,test,cat" for i in range(2)] + ["img/test/dog/9.png,test,dog"]
    path = _image_list(tmp_path, rows)
    cfg = _cfg(source="image-list", path=path, input_shape=(3, 8, 8), num_classes=2, val_fraction=0.0)
    b = load_data(cfg, CalibrationConfig(samples=2), tmp_path)
    assert b.train.x.shape == (6, 3, 8, 8) and sorted(b.train.y.tolist()) == [0, 0, 0, 1, 1, 1]
    assert b.test.y.tolist() == [0, 0] and "classes: cat, dog" in b.source
    assert b.preprocessing["output"]["classes"] == ["cat", "dog"] and b.preprocessing["resize"]["size"] == [8, 8]
    (note,) = [n for n in b.notes if "could not be read" in n]
    assert "9.png" in note  # listed but missing: skipped and named
    from PIL import Image

    with Image.open(tmp_path / "img/test/cat/1.png") as im:  # the same pixels as an image folder gives
        want = np.asarray(im.convert("RGB").resize((8, 8)), dtype=np.float32).transpose(2, 0, 1) / 255
    got = b.test.x[1].numpy() * np.asarray(b.std)[:, None, None] + np.asarray(b.mean)[:, None, None]
    assert np.allclose(got, want, atol=1e-5)


def test_image_list_with_teacher_labels_and_integer_labels(tmp_path: Path) -> None:
    rows = [f"img/train/cat/{i}.png,train," for i in range(3)] + ["img/test/cat/0.png,test,"]
    cfg = _cfg(source="image-list", path=_image_list(tmp_path, rows), input_shape=(3, 8, 8), num_classes=2,
               val_fraction=0.0, labels="teacher")  # fmt: skip
    b = load_data(cfg, CalibrationConfig(samples=2), tmp_path)
    assert b.unlabelled and b.train.y.tolist() == [-1, -1, -1]
    rows = [f"img/train/cat/{i}.png,train,{i % 2}" for i in range(3)] + ["img/test/cat/0.png,test,1"]
    cfg = _cfg(source="image-list", path=_image_list(tmp_path / "n", rows), input_shape=(3, 8, 8), num_classes=2,
               val_fraction=0.0)  # fmt: skip
    b = load_data(cfg, CalibrationConfig(samples=2), tmp_path)
    assert sorted(b.train.y.tolist()) == [0, 0, 1] and b.test.y.tolist() == [1]


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        ("path,label", ["img/train/cat/0.png,cat"], r"list\.csv: no column\(s\) split \(has path, label\)"),
        ("path,split,label", ["img/train/cat/0.png,train,cat", "img/test/cat/0.png,valid,cat"],
         r"list\.csv, line 3: split 'valid' for img/test/cat/0\.png"),
        ("path,split,label", ["img/train/cat/0.png,train,", "img/test/cat/0.png,test,cat"],
         r"list\.csv, line 2: no label"),
        ("path,split,label", ["img/train/cat/0.png,train,cat"], r"list\.csv: no images found"),
        ("path,split,label", ["img/train/cat/0.png,train,cat", "nowhere.png,test,cat"],
         r"list\.csv: none of its 1 image file\(s\) can be read \(first: .*nowhere\.png"),
    ],
)  # fmt: skip
def test_bad_image_lists_are_errors_naming_the_line(tmp_path: Path, header: str, rows: list[str], message: str) -> None:
    path = _image_list(tmp_path, [])
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    cfg = _cfg(source="image-list", path=path, input_shape=(3, 8, 8), num_classes=2, val_fraction=0.0)
    with pytest.raises(DataError, match=message):
        load_data(cfg, CalibrationConfig(samples=1), tmp_path)


def test_callable_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mydata.py").write_text(
        "import numpy as np\n"
        "def load():\n"
        "    r = np.random.default_rng(1)\n"
        "    return {'x_train': r.random((8, 1, 4, 4), dtype=np.float32), 'y_train': np.arange(8) % 2,\n"
        "            'x_test': r.random((4, 1, 4, 4), dtype=np.float32), 'y_test': np.arange(4) % 2}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = _cfg(source="callable", callable="mydata:load", input_shape=(1, 4, 4), num_classes=2, val_fraction=0.0)
    b = load_data(cfg, CalibrationConfig(samples=4), tmp_path)
    assert len(b.train) == 8 and "callable mydata:load" in b.source
    sys.modules.pop("mydata", None)


def test_callable_that_cannot_import(tmp_path: Path) -> None:
    cfg = _cfg(source="callable", callable="no_such_module_xyz:load")
    with pytest.raises(DataError, match="cannot import 'no_such_module_xyz:load'"):
        load_data(cfg, CalibrationConfig(), tmp_path)
