"""The training loop: best-epoch selection, NaN detection naming the term."""

from __future__ import annotations

import pytest
import torch

from edgekd.core.errors import TrainingError
from edgekd.data.dataset import Split
from edgekd.models import zoo
from edgekd.train.loop import TrainSettings, train


def _data(n: int = 128) -> Split:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, 12, 12, generator=g) + y.view(-1, 1, 1, 1).float() * 2  # separable
    return Split(x, y)


def test_training_learns_a_separable_problem() -> None:
    model = zoo.build("resnet", {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 2})
    data = _data()
    hist = train(
        model,
        data,
        lambda z, y, i, x: {"ce": torch.nn.functional.cross_entropy(z, y)},
        TrainSettings(epochs=6, batch_size=16, lr=0.05, augment=False),
        val=data,
    )
    assert hist.best_val_accuracy > 90 and 1 <= hist.best_epoch <= 6


def test_nan_loss_stops_with_the_term_named() -> None:
    model = zoo.build("resnet", {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 2})

    def loss(z: torch.Tensor, y: torch.Tensor, i: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": torch.nn.functional.cross_entropy(z, y), "fitnet": z.sum() * float("nan")}

    with pytest.raises(TrainingError, match=r"term\(s\) fitnet exploded") as info:
        train(model, _data(), loss, TrainSettings(epochs=1, batch_size=32, augment=False))
    assert "lower the learning rate" in str(info.value)


def test_empty_training_split() -> None:
    model = zoo.build("resnet", {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 2})
    with pytest.raises(TrainingError, match="training split is empty"):
        train(
            model,
            Split(torch.empty(0, 1, 12, 12), torch.empty(0, dtype=torch.long)),
            lambda *a: {},
            TrainSettings(epochs=1),
        )


def test_early_stop_when_validation_stops_improving() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 2))
    data = _data()
    hist = train(
        model,
        data,
        lambda z, y, i, x: {"zero": z.sum() * 0.0},
        TrainSettings(epochs=6, batch_size=32, augment=False, patience=2),
        val=data,
    )
    assert hist.stopped_early and len(hist.epochs) == 3 and hist.best_epoch == 1


def test_precomputed_teacher_logits_train_exactly_like_computed_ones() -> None:
    from edgekd.train.loop import predict
    from edgekd.train.objective import Recipe, fit

    teacher = zoo.build("resnet", {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 2}).eval()
    data = _data(64)
    recipe = Recipe(
        loss={"kd": {"weight": 1.0, "temperature": 4.0}},
        labels="given",
        augment=False,
        settings=TrainSettings(epochs=1, batch_size=16, lr=0.05, augment=False),
    )
    states = []
    for logits in (None, predict(teacher, data.x)):
        torch.manual_seed(0)
        student = zoo.build("resnet", {"depth": 8, "width": 2, "in_channels": 1, "num_classes": 2})
        fit(student, student, teacher, data, None, recipe, teacher_logits=logits)
        states.append(student.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    with pytest.raises(ValueError, match="teacher_logits has 3 rows for 64 training images"):
        fit(student, student, teacher, data, None, recipe, teacher_logits=torch.zeros(3, 2))


def test_training_threads_do_not_leak_into_the_caller() -> None:
    # a training with its own thread count (the distill pass's threads:) left the whole process on it, so later
    # work (another compile, a parity check) ran with other numerics than it would alone
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    model = zoo.build("resnet", {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 2})
    loss = lambda z, y, i, x: {"ce": torch.nn.functional.cross_entropy(z, y)}  # noqa: E731
    train(model, _data(32), loss, TrainSettings(epochs=1, batch_size=16, augment=False, threads=want))
    assert torch.get_num_threads() == before


def test_token_masking_feeds_the_model_masked_copies_drawn_anew_each_epoch() -> None:
    """With ``token_mask`` the model (and so the teacher of a KD loss) sees masked copies of the training texts;
    the training split itself is never changed."""
    x = torch.randint(10, 50, (1, 2, 8)).repeat(32, 1, 1)  # one text 32 times: the order cannot tell epochs apart
    x[:, 1] = 1
    x[:, 1, 6:] = 0  # two padding positions per text
    x[:, 0, 6:] = 0
    original = x.clone()
    seen: list[torch.Tensor] = []

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2))

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            if self.training:
                seen.append(t.clone())
            return self.w.expand(len(t), 2)

    settings = TrainSettings(epochs=2, batch_size=32, lr=0.01, augment=True, token_mask=0.5,
                             token_ids=(3, (0,), 0, 1))  # fmt: skip
    train(Recorder(), Split(x, torch.zeros(32, dtype=torch.long)),
          lambda z, y, i, t: {"ce": torch.nn.functional.cross_entropy(z, y)}, settings)  # fmt: skip
    assert len(seen) == 2 and torch.equal(x, original)
    for t in seen:
        masked = t[:, 0] == 3
        assert 0.3 < float(masked[:, :6].float().mean()) < 0.7
        assert not bool(masked[:, 6:].any())  # padding is never masked
    assert not torch.equal(seen[0], seen[1])  # new masks every epoch
