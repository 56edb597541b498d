"""Weight inheritance picks the teacher's channel groups with the largest L1 norm, consistently."""

from __future__ import annotations

import torch

from edgekd.models import zoo
from edgekd.train.inherit import inherit
from tests.helpers import TINY_TEACHER


def _teacher_with_dead_channels(live: dict[int, torch.Tensor]) -> torch.nn.Module:
    """A width-8 ResNet whose channels outside ``live[size]`` are dead in every tensor of that size.

    Every channel group of a CIFAR ResNet of width 8 has 8, 16 or 32 channels; zeroing the same
    indices in every dimension of a given size removes whole groups' channels (weights in and out,
    batch-norm scale and shift), so the teacher computes exactly the narrower network on ``live``.
    """
    torch.manual_seed(0)
    teacher = zoo.build("resnet", TINY_TEACHER).eval()
    with torch.no_grad():
        for name, t in teacher.state_dict().items():
            if not t.is_floating_point():
                continue
            for dim, size in enumerate(t.shape[:2]):
                if size in live:
                    dead = torch.tensor([i for i in range(size) if i not in set(live[size].tolist())])
                    fill = 1.0 if name.endswith("running_var") else 0.0
                    t.index_fill_(dim, dead, fill)
                    if name.endswith("weight") and t.dim() == 1:  # BN scale: keep live ones away from 0
                        t.index_fill_(0, live[size], 1.0)
    return teacher


def test_l1_groups_keep_the_live_channels_and_the_function() -> None:
    g = torch.Generator().manual_seed(1)
    live = {n: torch.sort(torch.randperm(n, generator=g)[: n // 2]).values for n in (8, 16, 32)}
    teacher = _teacher_with_dead_channels(live)
    student = zoo.build("resnet", {**TINY_TEACHER, "width": 4}).eval()
    x = torch.randn(6, 1, 28, 28)
    counts = inherit(student, teacher, x)
    assert counts["channels"] == "l1-groups" and counts["random"] == 0 and counts["sliced"] > 10
    assert torch.equal(student.stem[0].weight, teacher.stem[0].weight[live[8]])
    assert torch.equal(student.layer3[0].conv2.weight, teacher.layer3[0].conv2.weight[live[32]][:, live[32]])
    # the narrow student inherits exactly the live sub-network, so it computes the teacher's function
    torch.testing.assert_close(student(x), teacher(x), rtol=1e-4, atol=1e-4)


def test_a_frozen_teacher_still_gets_l1_groups_and_stays_frozen() -> None:
    # the distill pass freezes the teacher (requires_grad False) before inheriting: DepGraph must still trace it
    g = torch.Generator().manual_seed(2)
    live = {n: torch.sort(torch.randperm(n, generator=g)[: n // 2]).values for n in (8, 16, 32)}
    teacher = _teacher_with_dead_channels(live)
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = zoo.build("resnet", {**TINY_TEACHER, "width": 4}).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():  # as inside the pass
        counts = inherit(student, teacher, x)
    assert counts["channels"] == "l1-groups"
    assert torch.equal(student.stem[0].weight, teacher.stem[0].weight[live[8]])
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_first_channels_without_an_example_batch() -> None:
    live = {8: torch.tensor([4, 5, 6, 7]), 16: torch.arange(8, 16), 32: torch.arange(16, 32)}
    teacher = _teacher_with_dead_channels(live)
    student = zoo.build("resnet", {**TINY_TEACHER, "width": 4}).eval()
    counts = inherit(student, teacher)
    assert counts["channels"] == "first-channels"
    assert torch.equal(student.stem[0].weight, teacher.stem[0].weight[:4])
    assert float(student.stem[0].weight.detach().abs().sum()) == 0.0  # the dead ones: why L1 selection matters


def _flat(widths: tuple[int, int], blocks: tuple[int, int]) -> torch.nn.Sequential:
    """A CNN whose layers are one flat list (as torchvision's EfficientNet ``features``): names are indices, so
    index i means another stage in a model with other depths."""
    a, b = widths
    layers: list[torch.nn.Module] = [torch.nn.Conv2d(1, a, 3, padding=1), torch.nn.ReLU()]
    for _ in range(blocks[0]):
        layers += [torch.nn.Conv2d(a, a, 3, padding=1), torch.nn.ReLU()]
    layers += [torch.nn.Conv2d(a, b, 3, stride=2, padding=1), torch.nn.ReLU()]
    for _ in range(blocks[1]):
        layers += [torch.nn.Conv2d(b, b, 3, padding=1), torch.nn.ReLU()]
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(b, 10)]
    return torch.nn.Sequential(*layers)


def test_layers_are_inherited_by_stage_and_position_not_by_index() -> None:
    """By name, the student's downsampling conv (index 4) took the teacher's second stage-1 conv (also index 4,
    a 3x3 conv it fits in) and every later layer shifted; by structure each layer takes its teacher twin."""
    torch.manual_seed(0)
    teacher, student = _flat((16, 32), (2, 2)), _flat((8, 16), (1, 1))
    counts = inherit(student, teacher, torch.randn(2, 1, 16, 16))
    assert counts["layers"] == "structure" and counts["random"] == 0
    t, s = teacher, student
    # student: 0 stem, 2 stage-1 conv, 4 downsampling conv, 6 stage-2 conv, 10 fc
    # teacher: 0 stem, 2 and 4 stage-1 convs, 6 downsampling conv, 8 and 10 stage-2 convs, 14 fc
    pairs = {0: 0, 2: 2, 4: 6, 6: 8, 10: 14}
    for si, ti in pairs.items():  # random weights are distinct floats: a slice holds only its source's values
        held = set(s[si].weight.flatten().tolist())
        assert held <= set(t[ti].weight.flatten().tolist()), f"student layer {si} is not a slice of teacher {ti}"


def test_a_shallower_zoo_student_takes_the_first_blocks_of_each_stage() -> None:
    torch.manual_seed(0)
    teacher = zoo.build("resnet", {**TINY_TEACHER, "depth": 14})
    student = zoo.build("resnet", {**TINY_TEACHER, "depth": 8})
    counts = inherit(student, teacher, torch.randn(2, 1, 28, 28))
    assert counts["layers"] == "structure" and counts["random"] == 0 and counts["copied"] > 20
    for stage in ("layer1", "layer2", "layer3"):
        assert torch.equal(getattr(student, stage)[0].conv1.weight, getattr(teacher, stage)[0].conv1.weight)
    assert torch.equal(student.fc.weight, teacher.fc.weight)
