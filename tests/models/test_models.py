"""Model building and safe checkpoint loading."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from edgekd.config.model import ModelSpec
from edgekd.core.errors import ModelError
from edgekd.models import zoo
from edgekd.models.build import build, check_input, load_weights
from edgekd.models.count import count_macs, count_params


def test_resnet_depth_and_width() -> None:
    m20 = zoo.build("resnet", {"depth": 20, "width": 16})
    m8 = zoo.build("resnet", {"depth": 8, "width": 16})
    assert count_params(m20) > count_params(m8)
    assert len(m20.layer1) == 3 and len(m8.layer1) == 1
    for shape in ((1, 28, 28), (3, 32, 32)):
        net = zoo.build("resnet", {"depth": 8, "width": 8, "in_channels": shape[0]})
        assert net(torch.zeros(2, *shape)).shape == (2, 10)


def test_resnet_rejects_bad_depth() -> None:
    with pytest.raises(ModelError, match="depth must be 6n\\+2"):
        build(ModelSpec(arch="resnet", params={"depth": 9}), "teacher")


def test_macs_of_a_known_layer_stack() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 10))
    assert count_macs(net, (1, 8, 8)) == 4 * 8 * 8 * 9 + 256 * 10


class _Attention(torch.nn.Module):
    """A 1-D conv, then self-attention by matmul: operators the old Conv2d/Linear hooks did not count."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 8, 3, padding=1)  # 16 positions x 8 channels x 3 taps
        self.fc = torch.nn.Linear(8 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.flatten(2))  # (N, 8, 16)
        a = torch.matmul(h.transpose(1, 2), h)  # (N, 16, 16): 16 x 16 x 8 MACs
        h = torch.matmul(a, h.transpose(1, 2))  # (N, 16, 8): 16 x 8 x 16 MACs
        return self.fc(h.flatten(1))


def test_macs_count_every_operator_with_multiply_accumulates() -> None:
    assert count_macs(_Attention(), (1, 4, 4)) == 16 * 8 * 3 + 16 * 16 * 8 + 16 * 8 * 16 + 128 * 10


def test_checkpoint_shape_mismatch_is_explained(tmp_path: Path) -> None:
    torch.save(zoo.build("resnet", {"depth": 8, "width": 8}).state_dict(), tmp_path / "t.pt")
    model = zoo.build("resnet", {"depth": 8, "width": 16})
    with pytest.raises(ModelError, match=r"does not fit teacher.arch/params: .*with other shapes") as info:
        load_weights(model, tmp_path / "t.pt", "teacher")
    assert "set teacher.params" in str(info.value)


def test_checkpoint_missing_keys_are_explained(tmp_path: Path) -> None:
    torch.save(zoo.build("resnet", {"depth": 8, "width": 8}).state_dict(), tmp_path / "t.pt")
    with pytest.raises(ModelError, match=r"\d+ missing"):
        load_weights(zoo.build("resnet", {"depth": 14, "width": 8}), tmp_path / "t.pt", "teacher")


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("this ran during unpickling",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"weight": _Evil()}, path, pickle_protocol=2)
    with pytest.raises(ModelError, match="refused to load: the file holds Python objects"):
        load_weights(zoo.build("resnet", {"depth": 8, "width": 8}), path, "teacher")


def test_garbage_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "g.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match=r"cannot read|refused"):
        load_weights(zoo.build("resnet", {"depth": 8, "width": 8}), tmp_path / "g.pt", "teacher")


def test_input_shape_mismatch() -> None:
    net = zoo.build("resnet", {"depth": 8, "width": 8, "in_channels": 3})
    with pytest.raises(ModelError, match=r"does not accept inputs of data.input_shape \[1, 28, 28\]"):
        check_input(net, (1, 28, 28), 10, "teacher")
    with pytest.raises(ModelError, match=r"expected \[N, 5\]"):
        check_input(net, (3, 32, 32), 5, "teacher")


assert pickle  # the module is used by the crafted file above


def test_safetensors_checkpoint_loads_and_garbage_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = zoo.build("resnet", {"depth": 8, "width": 8})
    save_file(src.state_dict(), str(tmp_path / "t.safetensors"))
    dst = zoo.build("resnet", {"depth": 8, "width": 8})
    load_weights(dst, tmp_path / "t.safetensors", "teacher")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values(), strict=True))
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a valid safetensors file"):
        load_weights(dst, tmp_path / "bad.safetensors", "teacher")


def test_a_teacher_returning_a_tuple_is_a_model_error_not_a_traceback(tmp_path, monkeypatch) -> None:
    import edgekd
    from tests.helpers import tiny_config, write_config

    (tmp_path / "tuple_models.py").write_text(
        "import torch\nfrom edgekd.models import zoo\n\n"
        "class Pair(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.body = zoo.build('resnet', "
        "{'depth': 8, 'width': 4, 'in_channels': 1, 'num_classes': 10})\n"
        "    def forward(self, x):\n        y = self.body(x)\n        return y, y.softmax(1)\n\n"
        "def pair():\n    return Pair()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tiny_config(tmp_path)
    cfg["teacher"] = {"arch": "tuple_models:pair"}
    with pytest.raises(
        ModelError, match=r"teacher returns a tuple from forward, not a logits tensor of shape \[N, 10\]"
    ):
        edgekd.compile(write_config(tmp_path, cfg), out=tmp_path / "runs", quiet=True)
