"""Where training runs: TrainSettings.device / amp, the model returned where it was, the DDP ranks' devices."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from edgekd.config.model import ModelSpec
from edgekd.data.dataset import Split
from edgekd.models import zoo
from edgekd.train.distributed import Nodes, fit_distributed, process_group_backend, rank_device
from edgekd.train.loop import TrainSettings, teacher_predictions, train
from edgekd.train.objective import Recipe, fit

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (PyTorch sees none here)")


def _data(n: int = 128) -> Split:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    return Split(torch.randn(n, 1, 12, 12, generator=g) + y.view(-1, 1, 1, 1).float() * 2, y)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return zoo.build("resnet", {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 2})


def _ce(z: torch.Tensor, y: torch.Tensor, _i: torch.Tensor, _x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"ce": nn.functional.cross_entropy(z, y)}


def test_bf16_autocast_trains_in_bf16_and_keeps_fp32_weights() -> None:
    model, data = _model(), _data()
    seen: set[torch.dtype] = set()
    model.stem[0].register_forward_hook(lambda _m, _i, out: seen.add(out.dtype) if model.training else None)
    hist = train(model, data, _ce, TrainSettings(epochs=4, batch_size=16, lr=0.05, augment=False, amp="bf16"), val=data)
    assert seen == {torch.bfloat16}  # the convolutions ran in bf16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert hist.best_val_accuracy > 90


def test_the_ranks_device_and_process_group_follow_the_training_device() -> None:
    # the old worker chose nccl whenever CUDA existed, then wrapped a CPU student: a crash on any GPU machine
    assert process_group_backend(rank_device("cpu", 3)) == "gloo"
    assert rank_device("cpu", 3) == torch.device("cpu")
    assert rank_device("cuda:1", 2) == torch.device("cuda", 3)
    assert process_group_backend(rank_device("cuda", 0)) == "nccl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_machines_train_as_one(tmp_path: Path) -> None:
    """Two nodes (here two torchrun launchers on this machine, one process each, joined at node 0's endpoint)
    end with the same weights: the multi-node flags reach torchrun and the ranks all-reduce across nodes."""
    spec = ModelSpec(arch="resnet", params={"depth": 8, "width": 4, "in_channels": 1, "num_classes": 2})
    teacher, student = _model(), _model()
    recipe = Recipe(
        loss={"ce": {"weight": 1.0}}, labels="given", augment=False,
        settings=TrainSettings(epochs=1, batch_size=16, lr=0.05, augment=False, threads=1),
    )  # fmt: skip
    endpoint = f"127.0.0.1:{_free_port()}"
    out: dict[int, tuple] = {}
    errors: list[BaseException] = []

    def node(rank: int) -> None:
        try:
            out[rank] = fit_distributed(
                1, recipe, spec, teacher.state_dict(), spec, student.state_dict(), _data(), None, None, True,
                Nodes(2, rank, endpoint),
            )  # fmt: skip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=node, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    (w0, _h0, info0), (w1, _h1, _info1) = out[0], out[1]
    assert info0["world_size"] == 2 and info0["nodes"] == 2 and info0["backend"] == "gloo"
    assert max(float((w0[k].float() - w1[k].float()).abs().max()) for k in w0) < 1e-6
    assert any(not torch.equal(w0[k], v) for k, v in student.state_dict().items())  # it trained


@GPU
def test_training_on_cuda_returns_the_model_to_the_cpu_and_learns() -> None:
    model, data = _model(), _data()
    hist = train(model, data, _ce, TrainSettings(epochs=4, batch_size=16, lr=0.05, augment=False, device="cuda:0"),
                 val=data)  # fmt: skip
    assert next(model.parameters()).device.type == "cpu"
    assert hist.best_val_accuracy > 90


@GPU
def test_distillation_on_cuda_with_cached_teacher_logits_on_the_gpu() -> None:
    teacher, student, data = _model(), _model(), _data()
    logits = teacher_predictions(teacher, data.x, "cuda:0")
    assert logits.device.type == "cuda" and next(teacher.parameters()).device.type == "cpu"
    recipe = Recipe(
        loss={"ce": {"weight": 0.1}, "kd": {"weight": 0.9, "temperature": 4.0}}, labels="given", augment=False,
        settings=TrainSettings(epochs=2, batch_size=16, lr=0.05, augment=False, device="cuda:0", amp="fp16"),
    )  # fmt: skip
    fit(student, student, teacher, data, data, recipe, teacher_logits=logits)
    assert next(student.parameters()).device.type == "cpu" and next(teacher.parameters()).device.type == "cpu"
