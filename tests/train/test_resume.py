"""A long training survives a crash or a new machine: train(resume=file) saves the whole state after every epoch
and continues from it exactly (the same weights as a run that never stopped); other settings are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgekd.core.errors import TrainingError
from edgekd.data.dataset import Split
from edgekd.train.loop import TrainSettings, train

SETTINGS = TrainSettings(epochs=3, batch_size=16, lr=0.1, seed=0)


def _model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def _data() -> Split:
    g = torch.Generator().manual_seed(0)
    return Split(torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g))


def _loss(z: torch.Tensor, y: torch.Tensor, _i: torch.Tensor, _x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"ce": nn.functional.cross_entropy(z, y)}


class _Stop(Exception):
    pass


def test_a_stopped_training_continues_to_the_same_weights(tmp_path: Path) -> None:
    whole = _model()
    train(whole, _data(), _loss, SETTINGS)
    state = tmp_path / "state.pt"

    def crash_after_two(record: dict[str, float]) -> None:
        if record["epoch"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        train(_model(), _data(), _loss, SETTINGS, on_epoch=crash_after_two, resume=state)
    assert state.is_file()
    resumed = _model()
    history = train(resumed, _data(), _loss, SETTINGS, resume=state)
    assert [r["epoch"] for r in history.epochs] == [1.0, 2.0, 3.0]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_state_saved_with_other_settings_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state.pt"
    train(_model(), _data(), _loss, TrainSettings(epochs=1, batch_size=16, seed=0), resume=state)
    with pytest.raises(TrainingError, match="ran with other settings") as err:
        train(_model(), _data(), _loss, SETTINGS, resume=state)
    assert "delete" in (err.value.fix or "")


def test_a_state_continues_on_another_device_or_thread_count(tmp_path: Path) -> None:
    """Where a run computes is not what it trains: a state saved with 1 thread on the CPU (or by an edgekd from
    before ``device``/``amp`` existed) continues with other threads; the training settings are still checked."""
    whole = _model()
    train(whole, _data(), _loss, SETTINGS)
    state = tmp_path / "state.pt"

    def crash_after_one(record: dict[str, float]) -> None:
        if record["epoch"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        train(_model(), _data(), _loss, SETTINGS, on_epoch=crash_after_one, resume=state)
    saved = torch.load(state, weights_only=True)
    del saved["settings"]["device"], saved["settings"]["amp"]  # as written before those settings existed
    saved["settings"]["threads"] = 1
    torch.save(saved, state)
    resumed = _model()
    train(resumed, _data(), _loss, TrainSettings(**{**SETTINGS.__dict__, "threads": torch.get_num_threads()}),
          resume=state)  # fmt: skip
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
