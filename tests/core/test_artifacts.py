from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from edgekd.core.artifacts import atomic_write_bytes, atomic_writer, sha256_file


def test_atomic_write_bytes_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.onnx"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["model.onnx"]


def test_atomic_writer_keeps_old_content_when_block_raises(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_writer(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"half-written")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.onnx"]  # temp file removed


def test_atomic_writer_creates_file_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "new.bin"
    with pytest.raises(ValueError), atomic_writer(target) as tmp:
        tmp.write_bytes(b"x")
        raise ValueError
    assert not target.exists()
    with atomic_writer(target) as tmp:
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    assert target.stat().st_mode & 0o044 == 0o044  # readable by others, unlike mkstemp's 0600


def test_sha256_matches_hashlib(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk_size=1000) == hashlib.sha256(data).hexdigest()
