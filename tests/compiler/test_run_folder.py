"""The run folder's lock: exclusive while a compile writes, gone once it ends."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgekd
from edgekd.compiler.run_folder import RunLock
from edgekd.core.errors import PipelineError
from tests.helpers import tiny_config, write_config


def test_lock_file_is_removed_and_the_folder_can_be_locked_again(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").is_file()
        with pytest.raises(PipelineError, match="in use by another edgekd process"), RunLock(tmp_path):
            pass
    assert not (tmp_path / ".lock").exists()
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").is_file()


def test_a_finished_run_folder_holds_no_lock_file(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, passes=[{"distill": {"epochs": 1, "batch_size": 64}}])
    res = edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
    assert (res.run_dir / "result.json").is_file() and not (res.run_dir / ".lock").exists()
