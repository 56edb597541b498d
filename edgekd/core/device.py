"""Where training and teacher inference run: ``device: auto | cpu | cuda | cuda:N`` in model.yaml.

``auto`` is the first CUDA GPU when PyTorch sees one, else the CPU. A CUDA device this machine does not
have is a :class:`~edgekd.core.errors.ConfigError` naming the key, never a silent fall-back to the CPU.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator

import torch
from torch import nn

from edgekd.core.device_spec import PATTERN
from edgekd.core.errors import ConfigError

AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(spec: str, key: str = "device") -> torch.device:
    """The torch device ``spec`` names on this machine (``key``: the YAML key, for the error)."""
    if not re.match(PATTERN, spec):
        raise ConfigError(f"{key}: {spec!r} is not a device", fix=f"{key}: auto, cpu, cuda or cuda:N")
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"{key}: {spec}: PyTorch sees no CUDA GPU on this machine (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'no'})",
            fix=f"{key}: cpu (or auto), or install a CUDA build of torch on a machine with a GPU",
        )
    index = int(spec.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"{key}: {spec}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0 ...)",
            fix=f"{key}: cuda:0 ... cuda:{torch.cuda.device_count() - 1}, or auto",
        )
    return torch.device("cuda", index)


def check_amp(amp: str | None, device: torch.device, key: str = "amp") -> None:
    """fp16 autocast needs a GPU (PyTorch's CPU autocast computes in bf16); bf16 runs on both."""
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"{key}: fp16 on {device}: fp16 mixed precision needs a CUDA device", fix=f"{key}: bf16")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{key}: bf16: {torch.cuda.get_device_name(device)} has no bf16", fix=f"{key}: fp16")


def module_device(model: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for a module with neither)."""
    t = next(itertools.chain(model.parameters(), model.buffers()), None)
    return t.device if t is not None else torch.device("cpu")


@contextlib.contextmanager
def on_device(model: nn.Module, device: torch.device | str) -> Iterator[nn.Module]:
    """``model`` moved to ``device`` for the block, and back where it was afterwards (also on an error)."""
    home = module_device(model)
    model.to(device)
    try:
        yield model
    finally:
        model.to(home)


def describe(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H200)`` or ``cpu``: what result.json and the report say training ran on."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
