"""2:4 sparsity on TensorRT's axis: two of every four input channels at each output channel and kernel position,
kept through QAT, and --sparsity=enable only for weights that really are 2:4."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from onnx import numpy_helper

import edgekd
from edgekd.models.sparsity_2_4 import is_2_4, mask_2_4
from tests.helpers import TINY_TEACHER, tiny_config, write_config


def test_conv_mask_groups_input_channels_at_every_kernel_position() -> None:
    w = torch.randn(6, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    m = mask_2_4(w)
    # O x R x S x I, input channels in groups of four: exactly two kept in each
    kept = m.permute(0, 2, 3, 1).reshape(6, 3, 3, 2, 4).sum(-1)
    assert torch.equal(kept, torch.full_like(kept, 2.0)) and is_2_4(w * m)
    # the two largest of each group survive
    g = w.abs().permute(0, 2, 3, 1).reshape(6, 3, 3, 2, 4)
    top = g.topk(2, -1).indices.sort(-1).values
    chosen = (m.permute(0, 2, 3, 1).reshape(6, 3, 3, 2, 4) > 0).nonzero()[:, -1].reshape(6, 3, 3, 2, 2)
    assert torch.equal(top, chosen)


def test_a_mask_on_the_flattened_weight_is_not_2_4_for_tensorrt() -> None:
    """The old mask: two of every four consecutive elements of the flattened C*R*S weight (the wrong axis)."""
    w = torch.randn(8, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    groups = w.abs().reshape(8, -1, 4)
    flat_mask = torch.zeros_like(groups).scatter_(-1, groups.topk(2, -1).indices, 1.0).reshape(w.shape)
    assert not is_2_4(w * flat_mask) and is_2_4(w * mask_2_4(w))


def test_qat_keeps_the_2_4_zeros_and_the_engine_flag_follows_the_weights(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        passes=[
            {"prune": {"ratio": 0.25, "steps": 1, "round_to": 4, "sparsity_2_4": True, "recovery": {"epochs": 1}}},
            {"quantize": {"precision": "int8", "method": "qat", "qat": {"epochs": 1, "fraction": 0.5}}},
            {"lower": {"parity": {"samples": 32, "min_top1": 50.0, "min_cosine": 0.8}, "tensorrt": {"sparsity": True}}},
        ],
    )
    cfg["student"] = {"arch": "resnet", "params": dict(TINY_TEACHER)}
    res = edgekd.compile(write_config(tmp_path, cfg), target="jetson-orin-nano", out=tmp_path / "runs", quiet=True)
    qat = res.metrics["quantize"]["qat"]
    assert "layer1.0.conv1" in qat["sparse_2_4_layers"]
    model = onnx.load(str(res.artifacts["onnx"]))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    sparse = [w for w in convs if weights[w].shape[1] % 4 == 0]
    assert sparse and all(is_2_4(torch.from_numpy(weights[w].copy())) for w in sparse)
    assert res.metrics["lower"]["tensorrt"]["sparsity"] is True
    assert all("--sparsity=enable" in c for c in res.metrics["lower"]["tensorrt"]["commands"].values())
