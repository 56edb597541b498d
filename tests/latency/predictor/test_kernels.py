"""Kernel detection: the fused blocks found in exported graphs, their MACs and bytes, QDQ kernels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgekd.backends.onnx.lower import export_onnx
from edgekd.core.errors import ProfilingError
from edgekd.latency.predictor.calibrate import plain_stack
from edgekd.latency.predictor.kernels import _alignment, detect
from edgekd.models import zoo
from edgekd.models.count import count_macs


def test_resnet_blocks_fuse_conv_add_relu_and_macs_match_pytorch(tmp_path: Path) -> None:
    model = zoo.build("resnet", {"depth": 8, "width": 8, "in_channels": 1, "num_classes": 10}).eval()
    path = export_onnx(model, torch.zeros(1, 1, 28, 28), tmp_path / "r8.onnx")
    g = detect(path)
    types = [k.type.split(".")[0] for k in g.kernels]  # without the channel-alignment suffix
    # stem + 2 convs per block (3 blocks) + 2 shortcut 1x1 convs, then pool, flatten, fc
    assert types.count("conv3x3") == 7 and types.count("conv1x1") == 2
    assert types[-3:] == ["gpool", "reshape", "gemm"]
    # the second conv of each block absorbs the residual Add and the ReLU: no standalone elementwise kernel
    assert "eltwise" not in types
    fused = [k for k in g.kernels if any(n.endswith("/Add") for n in k.nodes)]
    assert len(fused) == 3 and all(k.nodes[-1].endswith("Relu") for k in fused)
    assert sum(k.macs for k in g.kernels if k.type != "gpool") == count_macs(model, (1, 28, 28))
    # widths 8 -> 16 -> 32: the 16-aligned convolutions read tensors written by 8-aligned ones, in another layout
    reorders = [k for k in g.kernels if k.type == "reorder"]
    assert reorders and all(k.nodes[0].endswith(":reorder") and k.bytes > 0 for k in reorders)
    assert g.input_bytes == 28 * 28 * 4


def test_depthwise_and_kernel_sizes_are_typed(tmp_path: Path) -> None:
    spec = {"in_channels": 3, "num_classes": 10, "layers": [["conv", 8, 5, 1], ["sep", 16, 3, 2], ["maxpool", 0, 0, 0]]}
    path = export_onnx(plain_stack(spec).eval(), torch.zeros(1, 3, 16, 16), tmp_path / "p.onnx")
    types = [k.type for k in detect(path).kernels]
    assert types[:5] == ["conv5x5.a8", "dwconv.a8", "conv1x1.a8", "pool", "gpool"]
    dw = detect(path).kernels[1]
    assert dw.macs == 8 * 8 * 8 * 9  # 8 channels, 8x8 output (stride 2), 3x3 taps, one input channel per group


def test_windowed_pool_counts_its_window(tmp_path: Path) -> None:
    spec = {"in_channels": 3, "num_classes": 10, "layers": [["conv", 16, 3, 1], ["maxpool", 0, 0, 0]]}
    path = export_onnx(plain_stack(spec).eval(), torch.zeros(1, 3, 16, 16), tmp_path / "p.onnx")
    pool, gpool = (next(k for k in detect(path).kernels if k.type == t) for t in ("pool", "gpool"))
    assert pool.out_shape == [1, 16, 8, 8] and pool.macs == 16 * 8 * 8 * 4  # every output reads a 2x2 window
    assert gpool.macs == 16 * 8 * 8  # a global pool reads each input once


def _ort_conv_weights(path: Path) -> list[list[int]]:
    """Weight shapes of the convolutions ONNX Runtime runs after its graph optimisations (NCHWc on x86)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    g = onnx.load(so.optimized_model_filepath).graph
    dims = {i.name: list(i.dims) for i in g.initializer}
    return [dims[n.input[1]] for n in g.node if n.op_type in ("Conv", "FusedConv")]


def test_channel_block_counts_the_padded_work_onnx_runtime_runs(tmp_path: Path) -> None:
    # 1 -> 20 (plain NCHW input, 20 outputs padded to 32), 20 -> 24 and 24 -> 40 (both sides padded)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 20, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(20, 24, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(24, 40, 1),
    ).eval()  # fmt: skip
    path = export_onnx(model, torch.zeros(1, 1, 8, 8), tmp_path / "m.onnx")
    plain = detect(path)
    padded = detect(path, channel_block=16)
    assert [k.type for k in padded.kernels] == ["conv3x3.nchw", "conv3x3", "conv1x1"]
    assert padded.kernels[0].macs == plain.kernels[0].macs * 32 / 20
    assert padded.kernels[1].macs == 64 * 32 * 32 * 9 and padded.kernels[2].macs == 64 * 48 * 32
    assert not [k for k in padded.kernels if k.type == "reorder"]  # all in the blocked layout
    # the same padding as the weights ONNX Runtime's NCHWc transformer builds, where this host has AVX-512
    ort_shapes = _ort_conv_weights(path)
    if ort_shapes and ort_shapes[0][0] == 32:
        assert ort_shapes == [[32, 1, 3, 3], [32, 32, 3, 3], [48, 32, 1, 1]]
        expected_weights = sum(int(np.prod(s)) * 4 for s in ort_shapes)
        assert padded.weight_bytes == expected_weights
    with pytest.raises(ValueError, match="channel_block"):
        detect(path, channel_block=0)


def test_channels_not_a_multiple_of_4_keep_the_generic_convolution(tmp_path: Path) -> None:
    # 16 -> 18 is blocked (outputs padded to 32); 18 -> 18 depthwise and 18 -> 32 read 18 channels: generic path
    model = torch.nn.Sequential(
        torch.nn.Conv2d(16, 18, 1), torch.nn.ReLU(),
        torch.nn.Conv2d(18, 18, 3, padding=1, groups=18), torch.nn.ReLU(),
        torch.nn.Conv2d(18, 32, 3, padding=1),
    ).eval()  # fmt: skip
    path = export_onnx(model, torch.zeros(1, 16, 8, 8), tmp_path / "m.onnx")
    kernels = detect(path, channel_block=16).kernels
    assert [k.type for k in kernels] == ["conv1x1", "reorder", "dwconv.plain", "conv3x3.plain"]
    assert kernels[0].macs == 64 * 32 * 16 and kernels[3].macs == 64 * 32 * 18 * 9  # the generic one is unpadded
    ort_shapes = _ort_conv_weights(path)
    if ort_shapes and ort_shapes[0][0] == 32:  # ONNX Runtime agrees where it uses 16-channel blocks
        assert ort_shapes == [[32, 16, 1, 1], [18, 1, 3, 3], [32, 18, 3, 3]]


def test_channel_alignment_suffix() -> None:
    assert _alignment(16, 32, 1) == ".a16" and _alignment(3, 16, 1) == ".a16"  # a first layer: outputs decide
    assert _alignment(8, 24, 1) == ".a8" and _alignment(24, 24, 1) == ".a8"
    assert _alignment(12, 20, 1) == "" and _alignment(16, 20, 1) == ""
    assert _alignment(32, 32, 32) == ".a16"  # depthwise: channels


def test_qdq_graph_gives_int8_kernels_and_boundary_quant(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((4, 4, 3, 3), dtype=np.int8), "w_q")
    inits = [
        w,
        numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s"),
        numpy_helper.from_array(np.array(0, dtype=np.uint8), "z"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), "zw"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "s", "zw"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["y"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "q.onnx"))
    kernels = detect(tmp_path / "q.onnx").kernels
    assert [k.type for k in kernels] == ["quant", "qconv3x3", "quant"]
    assert kernels[1].nodes == ["conv", "relu"] and kernels[1].macs == 4 * 8 * 8 * 4 * 9


def test_unreadable_file_is_a_profiling_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ProfilingError, match=r"bad\.onnx: cannot read as ONNX"):
        detect(bad)


def test_exporter_shape_arithmetic_is_folded_as_onnx_runtime_folds_it(tmp_path: Path) -> None:
    # EfficientNet-Lite0's same-padding convolutions export their pads as ConstantOfShape/Concat/Slice/Cast
    # chains feeding a Pad: ONNX Runtime folds them into the convolution, but read as exported they were 85
    # "other" kernels and the depthwise convolutions (whose input shape was then unknown) "gconv"
    pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    path = export_onnx(
        EfficientNet.from_name("efficientnet-lite0").eval(), torch.zeros(1, 3, 64, 64), tmp_path / "l0.onnx"
    )
    types = Counter(k.type for k in detect(path, channel_block=16).kernels)
    assert types == {"conv1x1": 32, "dwconv": 16, "conv3x3.nchw": 1, "gpool": 1, "reshape": 1, "gemm": 1}
