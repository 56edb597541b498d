"""Reproduce the example teacher: ResNet-20 (width 32) on the full Fashion-MNIST training set.

    python examples/fashion-mnist/train_teacher.py [--data /usr/share/datasets/fashion-mnist]

Writes ``teacher.pt`` (a state_dict, loaded with ``weights_only=True``) and
``teacher.json`` (recipe, test accuracy, time) next to this file. The committed
weights were produced by exactly this command on a 2-core x86 CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import torch

from edgekd.data.dataset import Split, to_float
from edgekd.data.idx import load_mnist_dir
from edgekd.train.loop import TrainSettings, accuracy, train

HERE = Path(__file__).resolve().parent
ARCH = {"depth": 20, "width": 32, "in_channels": 1, "num_classes": 10}
MEAN, STD = [0.2860], [0.3530]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()

    from edgekd.models.zoo import build

    raw = load_mnist_dir(args.data)
    train_split = Split(to_float(raw["x_train"], MEAN, STD), torch.from_numpy(raw["y_train"]))
    test_split = Split(to_float(raw["x_test"], MEAN, STD), torch.from_numpy(raw["y_test"]))
    torch.manual_seed(args.seed)
    model = build("resnet", ARCH)
    settings = TrainSettings(epochs=args.epochs, lr=args.lr, batch_size=128, seed=args.seed, schedule="onecycle")
    ce = torch.nn.CrossEntropyLoss()

    def log(rec: dict[str, float]) -> None:
        print(
            json.dumps({**rec, "test_accuracy": accuracy(model, test_split), "t": round(time.time() - t0)}), flush=True
        )

    t0 = time.time()
    hist = train(model, train_split, lambda z, y, _i, _x: {"ce": ce(z, y)}, settings, on_epoch=log)
    acc = accuracy(model, test_split)
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / "teacher.pt"
    torch.save(model.state_dict(), weights)
    info = {
        "arch": "resnet",
        "params": ARCH,
        "normalize": {"mean": MEAN, "std": STD},
        "recipe": {**settings.__dict__, "data": "Fashion-MNIST train (60,000)"},
        "test_accuracy": round(acc, 2),
        "train_seconds": round(hist.seconds),
        "parameters": sum(p.numel() for p in model.parameters()),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    (args.out / "teacher.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
