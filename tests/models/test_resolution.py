"""Zoo students and search spaces fit the input: the stem and first stage downsample large images so the final
map is about 7 pixels (as ImageNet CNNs), while 28x28 and 32x32 keep the stride-1 stem they always had."""

from __future__ import annotations

import pytest
import torch

from edgekd.models.count import count_macs
from edgekd.models.zoo import build
from edgekd.models.zoo.staged import downsampling_for
from edgekd.stages.search.space import MobileNetSpace, ResNetSpace


@pytest.mark.parametrize(
    ("size", "stem", "first", "final"), [(28, 1, 1, 7), (32, 1, 1, 8), (64, 2, 1, 8), (96, 4, 1, 6), (224, 4, 2, 7)]
)
def test_the_final_map_is_about_seven_pixels(size: int, stem: int, first: int, final: int) -> None:
    assert downsampling_for(size, 3) == {"stem_stride": stem, "first_stride": first}
    for arch in ("resnet", "mobilenet"):
        params = {"in_channels": 3, "num_classes": 10, "stem_stride": stem, "first_stride": first}
        model = build(arch, {**({"depth": 8, "width": 8} if arch == "resnet" else {}), **params}).eval()
        with torch.no_grad():
            assert model.features(torch.zeros(1, 3, size, size)).shape[-1] == final, arch


def test_small_inputs_build_the_same_students_as_before() -> None:
    """At 28x28 a space adds no downsampling key: the candidates (and their names in reports) are unchanged."""
    space = ResNetSpace()
    cand = space.enumerate()[5]
    assert space.params(cand, 1, 10, 28) == space.params(cand, 1, 10)


@pytest.mark.parametrize("space", [ResNetSpace(), MobileNetSpace(type="mobilenet")], ids=["resnet", "mobilenet"])
def test_a_224_space_lands_where_edge_cnns_live(space: ResNetSpace | MobileNetSpace) -> None:
    """Before, the default ResNet space spanned 0.16-4.5 GMACs at 224x224 (56x56 final maps, up to 2.5x
    ResNet-18's 1.8 GMACs) and the MobileNet space 0.04-1.6; now both stay under MobileNetV3-Small's ~60 MMACs
    to ~80 MMACs."""
    cands = space.enumerate()
    macs = [count_macs(build(space.arch, space.params(c, 3, 1000, 224)), (3, 224, 224)) for c in (cands[0], cands[-1])]
    assert min(macs) > 1e6 and max(macs) < 1e8, macs


def test_bad_strides_are_refused() -> None:
    with pytest.raises(ValueError, match="stem_stride must be 1, 2 or 4"):
        build("resnet", {"stem_stride": 3})
    with pytest.raises(ValueError, match="first_stride must be 1 or 2"):
        build("mobilenet", {"first_stride": 4})
