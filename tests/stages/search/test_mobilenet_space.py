"""The MobileNet-like space: the zoo model builds for both image sizes, exports to ONNX, and the YAML space
maps every gene to that model; search.space picks the space by its type."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from edgekd.backends.onnx.lower import export_onnx
from edgekd.backends.onnx.runtime import OrtModel
from edgekd.models import zoo
from edgekd.models.count import count_params
from edgekd.stages.search.space import MobileNetSpace, ResNetSpace
from edgekd.stages.search.stage import SearchConfig

SPACE = {
    "type": "mobilenet",
    "depths": [[1, 2], [1, 3]],
    "widths": [[8], [16, 24]],
    "expand": [[1, 4], [6]],
    "kernel": [[3, 5], [3]],
}


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_mobilenet_fits_both_image_sizes_and_exports_to_onnx(shape: tuple[int, int, int], tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = zoo.build(
        "mobilenet",
        {
            "depths": [1, 2, 2],
            "widths": [8, 16, 24],
            "expand": [1, 4, 6],
            "kernel": [3, 5, 3],
            "head": 32,
            "in_channels": shape[0],
        },
    ).eval()
    x = torch.randn(2, *shape)
    assert net(x).shape == (2, 10)
    side = shape[1] // 4  # stages 2 and 3 halve the size
    assert net.features(x).shape == (2, 32, side, side)
    ort = OrtModel(export_onnx(net, x[:1], tmp_path / "m.onnx"))
    with torch.no_grad():
        expected = net(x[:1]).numpy()
    np.testing.assert_allclose(ort.run(x[:1].numpy()), expected, atol=1e-4)


def test_inverted_residual_structure() -> None:
    net = zoo.build("mobilenet", {"depths": [1, 2], "widths": [8, 8], "expand": [1, 6], "kernel": [3, 5]})
    first, second = net.layer2[0], net.layer2[1]
    convs = [m for m in second.conv if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1), (5, 5), (1, 1)]
    assert convs[0].out_channels == 48 and convs[1].groups == 48  # expand 6, depthwise
    assert not first.residual and second.residual  # stride 2 first, then identity shortcuts
    one = [m for m in net.layer1[0].conv if isinstance(m, torch.nn.Conv2d)]
    assert len(one) == 2  # expand ratio 1: no 1x1 expansion
    assert count_params(zoo.build("mobilenet", {"expand": 6})) > count_params(zoo.build("mobilenet", {"expand": 1}))


def test_mobilenet_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="one value per stage"):
        zoo.build("mobilenet", {"depths": [1, 1], "widths": [8, 16], "expand": [1, 2, 3]})
    with pytest.raises(ValueError, match="odd"):
        zoo.build("mobilenet", {"kernel": 4})


def test_space_genes_map_to_the_model_and_every_candidate_builds() -> None:
    space = MobileNetSpace.model_validate(SPACE)
    assert space.size() == 2 * 2 * 1 * 2 * 2 * 1 * 2 * 1 == len(space.enumerate())
    rng = random.Random(0)
    for cand in space.enumerate():
        p = space.params(cand, 1, 10)
        net = zoo.build(space.arch, p)
        assert net(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
        assert len(net.layer1) == p["depths"][0] and len(net.layer2) == p["depths"][1]
        assert net.layer2[0].conv[-2].out_channels == p["widths"][1]
        child = space.mutate(cand, rng)
        assert sum(a != b for a, b in zip(cand, child, strict=True)) == 1 and child in space.enumerate()
    assert space.describe(space.enumerate()[0]) == "depths=1,1 widths=8,16 expand=1,6 kernel=3,3 stem=16"


def test_search_config_picks_the_space_by_type() -> None:
    assert isinstance(SearchConfig.model_validate({"space": SPACE}).space, MobileNetSpace)
    assert isinstance(SearchConfig.model_validate({"space": {"blocks": [[1]], "widths": [[8]]}}).space, ResNetSpace)
    with pytest.raises(ValidationError, match="kernel sizes must be odd"):
        SearchConfig.model_validate({"space": {**SPACE, "kernel": [[3, 4], [3]]}})
    with pytest.raises(ValidationError, match="expand: give one list of choices per stage"):
        SearchConfig.model_validate({"space": {**SPACE, "expand": [[1]]}})
    with pytest.raises(ValidationError, match="does not match any of the expected tags: 'resnet', 'mobilenet'"):
        SearchConfig.model_validate({"space": {"type": "vit"}})
    with pytest.raises(ValidationError, match="blocks"):  # a resnet key in a mobilenet space is refused
        SearchConfig.model_validate({"space": {**SPACE, "blocks": [[1]]}})


def test_config_errors_name_the_yaml_key_of_a_space() -> None:
    from edgekd.compiler.plan import parse_model_config
    from edgekd.core.errors import ConfigError

    raw = {"teacher": {"arch": "resnet"}, "passes": [{"search": {"space": {**SPACE, "blocks": [[1]]}}}]}
    with pytest.raises(ConfigError, match=r"passes\[0\]\.search\.space\.blocks: unknown key 'blocks'"):
        parse_model_config(raw)
    raw["passes"][0]["search"]["space"] = {**SPACE, "kernel": [[4], [3]]}
    with pytest.raises(ConfigError, match=r"passes\[0\]\.search\.space: kernel sizes must be odd"):
        parse_model_config(raw)
