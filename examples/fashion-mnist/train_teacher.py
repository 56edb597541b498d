"""Reproduce the example teacher: ResNet-20 (width 32) on the training share of Fashion-MNIST.

    python examples/fashion-mnist/train_teacher.py

The teacher trains on exactly the images a compile of ``model.yaml`` trains on: the 60,000
training images minus the validation split that ``data.val_fraction`` and the compile seed hold
out (6,000 images at 0.1, seed 0). It never sees that split, so the accuracy guard's reference
(the teacher's accuracy on it) is an honest one. It trains a fixed number of epochs and keeps the
last weights: neither the validation split nor the test split chooses anything.

Writes ``teacher.pt`` (a state_dict, loaded with ``weights_only=True``) and ``teacher.json``
(recipe, the held-out split, validation and test accuracy, time) next to this file. The committed
weights were produced by exactly this command on a 2-core x86 CPU. The training state is saved after every
epoch (``--state``): an interrupted run continues where it stopped when started again, on any machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import torch

from edgekd.compiler.plan import load_model_config
from edgekd.data import load_data
from edgekd.train.loop import TrainSettings, accuracy, train

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=HERE / "model.yaml", help="the model.yaml whose split to honour")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument(
        "--state",
        type=Path,
        default=HERE / "teacher_training_state.pt",
        help="the training state after every epoch; an existing one is continued (on this or another machine)",
    )
    args = ap.parse_args()

    from edgekd.models.zoo import build

    cfg = load_model_config(args.config)
    data = load_data(cfg.data, cfg.calibration, cfg.base_dir, cfg.seed)
    if "subset" in data.source:
        raise SystemExit(f"{data.source}: the example teacher needs the full Fashion-MNIST set (see DATA.md)")
    torch.manual_seed(args.seed)
    model = build(cfg.teacher.arch, cfg.teacher.params)
    settings = TrainSettings(epochs=args.epochs, lr=args.lr, batch_size=128, seed=args.seed, schedule="onecycle")
    ce = torch.nn.CrossEntropyLoss()

    def log(rec: dict[str, float]) -> None:
        seen = {"val_accuracy": accuracy(model, data.val), "test_accuracy": accuracy(model, data.test)}
        print(json.dumps({**rec, **seen, "t": round(time.time() - t0)}), flush=True)

    t0 = time.time()
    hist = train(model, data.train, lambda z, y, _i, _x: {"ce": ce(z, y)}, settings, on_epoch=log, resume=args.state)
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / "teacher.pt"
    torch.save(model.state_dict(), weights)
    info = {
        "arch": cfg.teacher.arch,
        "params": cfg.teacher.params,
        "normalize": {"mean": data.mean, "std": data.std},
        "recipe": {**settings.__dict__, "data": f"{data.source}: training share ({len(data.train.y):,} images)"},
        "held_out": {
            "split": "val",
            "images": len(data.val.y),
            "val_fraction": cfg.data.val_fraction,
            "seed": cfg.seed,
            "sha256": data.val.sha256(),
            "note": "the compile's validation split; the teacher never trained on it",
        },
        "val_accuracy": round(accuracy(model, data.val), 2),
        "test_accuracy": round(accuracy(model, data.test), 2),
        "train_seconds": round(hist.seconds),
        "parameters": sum(p.numel() for p in model.parameters()),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    (args.out / "teacher.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
