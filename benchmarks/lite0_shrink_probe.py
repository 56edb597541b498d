"""How much of a pretrained teacher a shrunk, inherited student keeps before any training (issue #15).

    python examples/efficientnet-lite0/prepare_photos.py   # photos.npz, once
    python benchmarks/lite0_shrink_probe.py

The ImageNet-pretrained EfficientNet-Lite0 of ``examples/efficientnet-lite0`` is shrunk by the ``shrink`` builder
(the teacher-derived search space: per stage a share of channels kept by torch-pruning's dependency groups, largest
L1 first, and the last removable blocks dropped), every kept weight inherited, no training. For each shrink the
JSON holds its params and MACs and its top-1 agreement with the teacher on 200 held-out crops of the training photos
and on the 400 crops of the 4 photos no student trains on, as built and after re-estimating the batch-norm
statistics on 200 other training crops (a common repair after pruning). Writes
``benchmarks/results/lite0_shrink_probe.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "efficientnet-lite0"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(EXAMPLE))

import numpy as np
import torch

from edgekd.config.model import ModelSpec
from edgekd.core.artifacts import atomic_write_bytes
from edgekd.models.build import build
from edgekd.models.count import count_macs, count_params

OUT = ROOT / "benchmarks" / "results" / "lite0_shrink_probe.json"
SHAPE = (3, 224, 224)
#: (widths per stage, blocks dropped per stage); Lite0 has 0, 1, 1, 4 and 3 removable blocks
SHRINKS = [
    ([1.0] * 5, [0] * 5),
    ([1.0] * 5, [0, 1, 1, 1, 1]),
    ([1.0] * 5, [0, 1, 1, 2, 1]),
    ([1.0] * 5, [0, 1, 1, 3, 2]),
    ([1.0, 1.0, 1.0, 0.75, 0.75], [0] * 5),
    ([0.75] * 5, [0] * 5),
    ([0.75] * 5, [0, 1, 1, 2, 1]),
    ([0.5] * 5, [0, 1, 1, 1, 1]),
]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _prep(a: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(a).float() / 255 - MEAN) / STD


@torch.no_grad()
def _top1(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + 50]) for i in range(0, len(x), 50)]).argmax(1)


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Batch-norm running statistics re-estimated on ``x`` (cumulative average), weights untouched."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for i in range(0, len(x), 50):
        model(x[i : i + 50])
    return model.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from lite0 import teacher as build_teacher

    teacher = build_teacher().eval()
    with np.load(EXAMPLE / "photos.npz") as f:
        train, test = f["x_train"], f["x_test"]
    order = np.random.default_rng(0).permutation(len(train))
    x_cal, x_held, x_unseen = _prep(train[order[:200]]), _prep(train[order[200:400]]), _prep(test)
    t_held, t_unseen = _top1(teacher, x_held), _top1(teacher, x_unseen)
    rows: list[dict[str, Any]] = []
    for widths, drop in SHRINKS:
        t0 = time.perf_counter()
        spec = ModelSpec(arch="shrink", params={"input_shape": list(SHAPE), "widths": widths, "drop": drop})
        student = build(spec, "student", teacher=teacher)
        row: dict[str, Any] = {
            "widths": widths,
            "drop": drop,
            "params": count_params(student),
            "macs": count_macs(student, SHAPE),
            "agreement_held_out_crops": round(float((_top1(student, x_held) == t_held).float().mean()) * 100, 1),
            "agreement_unseen_photos": round(float((_top1(student, x_unseen) == t_unseen).float().mean()) * 100, 1),
        }
        recalibrate_bn(student, x_cal)
        row["bn_recalibrated"] = {
            "agreement_held_out_crops": round(float((_top1(student, x_held) == t_held).float().mean()) * 100, 1),
            "agreement_unseen_photos": round(float((_top1(student, x_unseen) == t_unseen).float().mean()) * 100, 1),
        }
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    doc = {
        "issue": 15,
        "teacher": {
            "arch": "EfficientNet-Lite0, ImageNet weights",
            "params": count_params(teacher),
            "macs": count_macs(teacher, SHAPE),
        },
        "data": {
            "held_out": "200 crops of the 12 training photos (not the 200 used for batch-norm re-estimation)",
            "unseen": f"{len(x_unseen)} crops of the 4 test photos",
            "labels": "the teacher's top-1 (no ImageNet labels offline)",
        },
        "rows": rows,
        "date": time.ctime(),
        "command": "python benchmarks/lite0_shrink_probe.py " + " ".join(sys.argv[1:]),
    }
    atomic_write_bytes(OUT, (json.dumps(doc, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
