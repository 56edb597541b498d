from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgekd.backends.onnx.lower import export_onnx, unsupported_operator
from edgekd.backends.onnx.runtime import OrtModel
from edgekd.core.errors import ExportError
from edgekd.models.zoo import build

TINY = {"depth": 8, "width": 8, "in_channels": 1, "num_classes": 10}


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = build("resnet", TINY)
    # non-trivial BatchNorm statistics so eval-mode export differs from train mode
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


def test_export_matches_torch_in_onnxruntime(tmp_path: Path) -> None:
    model = _model().train()
    x = torch.randn(6, 1, 28, 28)
    path = export_onnx(model, x[:1], tmp_path / "m.onnx")
    assert model.training  # caller's mode restored
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.opset_import[0].version == 17
    ort_model = OrtModel(path, threads=1)
    assert ort_model.fixed_batch == 1
    model.eval()
    with torch.no_grad():
        expected = model(x).numpy()
    got = ort_model.predict(x.numpy())  # fixed batch of 1: loops
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_dynamic_batch_export_runs_any_batch(tmp_path: Path) -> None:
    model = _model().eval()
    path = export_onnx(model, torch.randn(1, 1, 28, 28), tmp_path / "d.onnx", dynamic_batch=True)
    ort_model = OrtModel(path)
    assert ort_model.fixed_batch is None
    x = torch.randn(7, 1, 28, 28)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(ort_model.run(x.numpy()), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ort_model.predict(x.numpy(), batch_size=3), expected, atol=1e-4, rtol=0)


def test_opset18_uses_dynamo_and_writes_one_file(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    model = _model().eval()
    path = export_onnx(model, torch.randn(1, 1, 28, 28), tmp_path / "m18.onnx", opset=18)
    assert "[torch.onnx]" not in capfd.readouterr().out  # exporter chatter kept off stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m18.onnx"]  # no .onnx.data, no temp files
    proto = onnx.load(str(path))
    assert any(o.domain in ("", "ai.onnx") and o.version == 18 for o in proto.opset_import)
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(OrtModel(path).run(x.numpy()), expected, atol=1e-4, rtol=0)


class KthValue(nn.Module):
    """aten::kthvalue has no ONNX symbolic in the legacy exporter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.kthvalue(x.flatten(1), 2, dim=1).values


def test_unsupported_operator_raises_export_error_naming_it(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "k.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(ExportError) as info:
        export_onnx(KthValue(), torch.randn(1, 1, 4, 4), target, opset=17)
    err = info.value
    assert "aten::kthvalue" in err.message and "opset 17" in err.message and str(target) in err.message
    assert err.fix is not None and "opset" in err.fix and "backend" in err.fix
    assert "Torch IR graph" not in capfd.readouterr().out  # the legacy exporter's IR dump is kept off stdout
    assert target.read_bytes() == b"previous"  # failed export leaves the old artifact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.onnx"]


def test_other_failures_keep_the_original_message(tmp_path: Path) -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("shape mismatch in layer head")

    with pytest.raises(ExportError, match="shape mismatch in layer head"):
        export_onnx(Broken(), torch.randn(1, 3), tmp_path / "b.onnx")


def test_unsupported_operator_parsing() -> None:
    legacy = "Exporting the operator 'aten::linalg_eigh' to ONNX opset version 17 is not supported."
    dynamo = "No ONNX function found for <OpOverload(op='aten._linalg_eigh', overload='default')>. Failure"
    assert unsupported_operator(legacy) == "aten::linalg_eigh"
    assert unsupported_operator(dynamo) == "aten._linalg_eigh"
    assert unsupported_operator("CUDA out of memory") is None


def test_unsupported_operator_names_the_layer_that_calls_it(tmp_path: Path) -> None:
    class Pool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.kthvalue(x.flatten(1), 2, dim=1).values[:, None].expand(-1, 10)

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Sequential(torch.nn.ReLU(), Pool()))
    with pytest.raises(ExportError, match=r"operator 'aten::kthvalue' \(called in layer '1\.1'\)"):
        export_onnx(model, torch.randn(1, 1, 8, 8), tmp_path / "m.onnx")
