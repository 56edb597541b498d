"""model.yaml ``device`` and ``amp``: resolved on this machine, a device it lacks is an error naming the key."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.core.device import check_amp, module_device, on_device, resolve_device
from edgekd.core.errors import ConfigError


def test_auto_is_a_gpu_when_there_is_one_else_the_cpu() -> None:
    assert resolve_device("auto") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_cuda_device_without_a_gpu_is_an_error_not_a_silent_cpu_run() -> None:
    with pytest.raises(ConfigError, match=r"device: cuda:1: PyTorch sees no CUDA GPU") as err:
        resolve_device("cuda:1")
    assert "device: cpu" in (err.value.fix or "")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_index_beyond_the_machine_is_an_error() -> None:
    n = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=rf"has {n} CUDA device"):
        resolve_device(f"cuda:{n}")


def test_a_malformed_device_is_an_error() -> None:
    with pytest.raises(ConfigError, match="'gpu' is not a device"):
        resolve_device("gpu")


def test_fp16_needs_a_gpu() -> None:
    with pytest.raises(ConfigError, match="fp16 mixed precision needs a CUDA device") as err:
        check_amp("fp16", torch.device("cpu"))
    assert err.value.fix == "amp: bf16"
    check_amp("bf16", torch.device("cpu"))  # PyTorch's CPU autocast
    check_amp(None, torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_device_puts_the_model_back_even_after_an_error() -> None:
    model = nn.Linear(2, 2)
    with pytest.raises(RuntimeError), on_device(model, "cuda"):
        assert module_device(model).type == "cuda"
        raise RuntimeError
    assert module_device(model) == torch.device("cpu")
