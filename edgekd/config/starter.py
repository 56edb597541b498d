"""``edgekd init``: a commented starter model.yaml that validates and runs as written."""

from __future__ import annotations

from pathlib import Path

from edgekd.core.artifacts import atomic_write_bytes
from edgekd.core.errors import ConfigError

STARTER = """\
# edgekd model config. Validate and run with:
#   edgekd compile model.yaml --target x86-cpu --out runs/
# Relative paths are read from the folder of this file.
name: my-model

# The trained model to compress. arch names a zoo architecture (edgekd.models.zoo.names()) or your
# own builder "mymodels:build" (mymodels.py may sit next to this file); params are its arguments;
# checkpoint is a state_dict (torch.save(model.state_dict())).
teacher:
  arch: resnet
  params: {depth: 20, width: 32, in_channels: 1, num_classes: 10}
  checkpoint: {checkpoint}
  # output: logits           # forward returns a tuple/dict: the index or key of the logits
  # taps: {features: layer3, classifier: fc}   # only if the hooks' guess (last Linear, map before pooling) is wrong

# The smaller model to train from the teacher; a search pass (below, commented out) picks one instead.
student:
  arch: resnet
  params: {depth: 8, width: 16, in_channels: 1, num_classes: 10}

# Where the images come from. source: fashion-mnist | npz | image-folder | image-list | callable
#   fashion-mnist: the Debian package dataset-fashion-mnist if installed, else the bundled subset
#   npz:           path: data.npz holding x_train, y_train, x_test, y_test (NCHW uint8 or float in [0,1])
#   image-folder:  path: folder with train/<class>/*.png and test/<class>/*.png (or ImageNet's val/<class>/)
#   image-list:    path: a CSV file list with columns path,split,label (split train or test)
#   (image-folder / image-list: stream: true reads batches from disk instead of memory; auto above 2 GiB)
#   callable:      callable: "package.module:function" returning those four arrays
data:
  source: fashion-mnist
  input_shape: [1, 28, 28]
  num_classes: 10
  val_fraction: 0.1          # held out of train for checkpoint selection and the accuracy guard
  # train_limit: 20000       # train on the first N images only (quick runs)
  # normalize:               # per-channel mean/std of [0,1] pixels; default: Fashion-MNIST's, or computed from
  #                          # the training split. ImageNet-pretrained teachers need ImageNet's:
  #   mean: [0.485, 0.456, 0.406]
  #   std: [0.229, 0.224, 0.225]
  # labels: teacher          # unlabelled images: the teacher labels every split (accuracy = agreement with it)
  # resize: 256              # image files: shorter side to 256 (aspect kept), then the centre input_shape crop

# INT8 calibration images, taken from the training split (never the test split).
calibration:
  samples: 256
  method: minmax             # minmax | entropy | percentile

# Where distill, prune recovery, QAT and teacher inference run: auto (a CUDA GPU if PyTorch sees one, else the
# CPU) | cpu | cuda | cuda:N. amp: none | bf16 | fp16 (fp16 on a GPU only) trains under autocast.
device: auto
amp: none

passes:
  # - search:                # training-free student search under a budget; replaces student above
  #     space: {type: resnet, blocks: [[1, 2, 3], [1, 2, 3], [1, 2, 3]], widths: [[8, 16], [16, 32], [32, 64]]}
  #     # space: {type: mobilenet, depths: [[1, 2], [1, 2, 3], [1, 2, 3]], widths: [[8, 16], [16, 24], [32, 48]],
  #     #         expand: [[1, 3, 6], [3, 6], [3, 6]], kernel: [[3, 5], [3, 5], [3, 5]]}
  #     # space: {type: shrink, widths: [25, 50, 75, 100], max_drop: 2}   # the teacher itself, narrowed, inherited
  #     proxy: params        # the default (largest student within budget); teacher-aware: diswot
  #     budget: {latency_ms: 0.2, params: 200000}
  - distill:                 # a weighted sum of named loss terms (edgekd.train.losses)
      epochs: 5
      optimizer: {lr: 0.1, momentum: 0.9, weight_decay: 5.0e-4}
      loss:
        ce: 0.1
        kd: {weight: 0.9, temperature: 4}
        # fitnet: {weight: 10, pairs: [{student: layer3, teacher: layer3}]}
      init: random           # inherit: copy teacher weights where shapes allow
      # nproc: 2             # data-parallel processes (one GPU each); --nnodes/--node-rank/--rdzv-endpoint: machines
  - quantize:
      precision: int8        # int8 | fp16 | fp32; activation type follows the target
  - lower:                   # ONNX export + parity check against PyTorch on held-out images
      opset: 17
  - profile: {}              # latency in ONNX Runtime, teacher measured side by side
  - report: {}               # report.md + result.json

constraints:
  max_accuracy_drop: 1.5     # points below the teacher's test accuracy
"""


def write_starter(path: str | Path, force: bool = False, checkpoint: str = "teacher.pt") -> Path:
    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists", fix="choose another path or pass --force to overwrite it")
    atomic_write_bytes(path, STARTER.replace("{checkpoint}", checkpoint).encode())
    return path
