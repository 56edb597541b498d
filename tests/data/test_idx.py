"""IDX reader: round trip of real and written files, clear errors on truncated or foreign files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from edgekd.core.errors import DataError
from edgekd.data.idx import load_mnist_dir, read_idx


def write_idx(path: Path, arr: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def test_round_trip_plain_and_gzip(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    write_idx(tmp_path / "b", arr, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), arr)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    arr = np.zeros((5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t", arr, compress=False)
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t")


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "x")


def test_mnist_dir_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))
    raw = load_mnist_dir(tmp_path)
    assert raw["x_train"].shape == (6, 1, 28, 28) and raw["y_test"].shape == (4,)
    assert raw["y_train"].dtype == np.int64


def test_missing_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_mnist_dir(tmp_path)


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian dataset-fashion-mnist not installed"
)
def test_real_fashion_mnist() -> None:
    raw = load_mnist_dir("/usr/share/datasets/fashion-mnist")
    assert raw["x_train"].shape == (60000, 1, 28, 28) and raw["x_test"].shape == (10000, 1, 28, 28)
    assert np.bincount(raw["y_test"]).tolist() == [1000] * 10
