"""A pruned model reloads from its recorded layer shapes and a tensor-only state_dict, without torch-pruning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from edgekd.config.model import ModelSpec
from edgekd.core.errors import ModelError
from edgekd.models.build import build
from edgekd.models.shapes import apply_shapes, changed_shapes, layer_shapes
from edgekd.stages.prune.channels import ChannelPruner
from tests.helpers import REPO, TINY_TEACHER

RELOAD = """
import sys, json, torch
sys.modules["torch_pruning"] = None  # any import of torch-pruning now fails
from safetensors.torch import load_file
from edgekd.config.model import ModelSpec
from edgekd.models.build import build
spec = json.load(open(sys.argv[1]))
model = build(ModelSpec(arch=spec["arch"], params=spec["params"], shapes=spec["shapes"]), "student")
model.load_state_dict(load_file(sys.argv[2]))
model.eval()
torch.manual_seed(1)
print(json.dumps(model(torch.randn(2, 1, 28, 28)).tolist()))
"""


def test_pruned_model_reloads_without_torch_pruning(tmp_path: Path) -> None:
    import json

    torch.manual_seed(0)
    model = build(ModelSpec(arch="resnet", params=TINY_TEACHER), "student")
    before = layer_shapes(model)
    ChannelPruner(model, torch.zeros(1, 1, 28, 28), 0.5, 1, "l2", round_to=2, ignored=[model.fc]).step()
    shapes = changed_shapes(before, layer_shapes(model))
    assert shapes["stem.0"] == [1, 4, 1] and "fc" in shapes and shapes["fc"] == [16, 10]
    (tmp_path / "spec.json").write_text(json.dumps({"arch": "resnet", "params": TINY_TEACHER, "shapes": shapes}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    out = subprocess.run(
        [sys.executable, "-c", RELOAD, str(tmp_path / "spec.json"), str(tmp_path / "w.safetensors")],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    model.eval()
    torch.manual_seed(1)
    expected = model(torch.randn(2, 1, 28, 28))
    assert torch.allclose(torch.tensor(json.loads(out.stdout)), expected, atol=1e-6)


def test_shapes_naming_a_missing_layer_is_a_model_error() -> None:
    spec = ModelSpec(arch="resnet", params=TINY_TEACHER, shapes={"layer9.conv": [1, 2, 1]})
    with pytest.raises(ModelError, match=r"layer9\.conv"):
        build(spec, "student")


def test_apply_shapes_rejects_wrong_arity() -> None:
    model = build(ModelSpec(arch="resnet", params=TINY_TEACHER), "student")
    with pytest.raises(ValueError, match=r"shapes.stem.0: expected 3 positive sizes"):
        apply_shapes(model, {"stem.0": [1, 4]})
