"""Bring your own model (issue #15): users' models through the whole chain, stage by stage.

    python benchmarks/byom.py                       # every model below
    python benchmarks/byom.py --models plain-cnn    # one of them

Each model is a ``model.yaml`` under ``benchmarks/byom/`` with its builder next to it (the folder is importable,
as for a user's project): search (the teacher-derived ``shrink`` space) -> distill -> prune (with KD recovery) ->
INT8 -> lower (ONNX and TFLite, parity-checked) -> profile (ONNX Runtime and LiteRT on this host) -> report,
compiled for ``benchmarks/targets/x86-onnx-litert.yaml``. Per stage the JSON keeps the seconds, the student's
params and MACs and what the stage measured; per artifact its parity, accuracy and latency (p50).

Models:

- ``plain-cnn``: a plain ``nn.Sequential`` CNN at 28x28 (no ``features()``, no ``fc``), trained here first by a
  plain PyTorch loop (SGD, one-cycle, ``--teacher-epochs``; cached in ``runs/bench-byom/``) on Fashion-MNIST's
  training split; accuracy on the full 10k test split.

torchvision and timm (the issue's ResNet-18, MobileNetV3-Small, EfficientNet-B0) do not import beside this
torch build here (README, Models), so they are not in this run; EfficientNet-Lite0 at 224x224 has its own
benchmark (``efficientnet_lite0.py``). Writes ``benchmarks/results/byom.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

import edgekd
from edgekd.config.model import CalibrationConfig, DataConfig
from edgekd.core.artifacts import atomic_write_bytes
from edgekd.data import load_data
from edgekd.models.count import count_macs, count_params
from edgekd.train.loop import accuracy

HERE = ROOT / "benchmarks" / "byom"
OUT = ROOT / "benchmarks" / "results" / "byom.json"
CACHE = ROOT / "runs" / "bench-byom"
TARGET = ROOT / "benchmarks" / "targets" / "x86-onnx-litert.yaml"
MODELS = ("plain-cnn",)
METRICS = ("teacher", "student", "search", "distill", "prune", "quantize", "lower", "profile")


def train_plain_cnn(epochs: int, seed: int = 0) -> dict[str, Any]:
    """The user's own training: a plain PyTorch loop over the training split edgekd also reads (the same
    validation and test shares stay out of it). Writes ``runs/bench-byom/plain-cnn-teacher.pt`` (a state_dict)."""
    sys.path.insert(0, str(HERE))
    import plain_cnn

    path = CACHE / "plain-cnn-teacher.pt"
    info = CACHE / "plain-cnn-teacher.json"
    if path.is_file() and info.is_file() and json.loads(info.read_text()).get("epochs") == epochs:
        return json.loads(info.read_text())
    data = load_data(DataConfig(source="fashion-mnist"), CalibrationConfig(), ROOT, seed)
    torch.manual_seed(seed)
    model = plain_cnn.cnn(1, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = epochs * ((len(data.train) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(data.train), generator=gen)
        for idx in order.split(128):
            x, y = data.train.x[idx], data.train.y[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            sched.step()
        model.eval()
        print(f"teacher epoch {epoch + 1}/{epochs}: val {accuracy(model, data.val):.2f}%", flush=True)
    doc = {
        "arch": "plain_cnn:cnn",
        "epochs": epochs,
        "seed": seed,
        "train_images": len(data.train),
        "seconds": round(time.perf_counter() - t0, 1),
        "val_accuracy": accuracy(model, data.val),
        "test_accuracy": accuracy(model, data.test),
        "params": count_params(model),
        "macs": count_macs(model, (1, 28, 28)),
        "recipe": "SGD nesterov lr 0.1 momentum 0.9 wd 5e-4, one-cycle, batch 128, horizontal flips",
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    atomic_write_bytes(info, (json.dumps(doc, indent=1) + "\n").encode())
    return doc


def per_stage(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per stage of ``result.json`` (what it produced and measured) with the seconds its pass took."""
    seconds = {p["pass"]: p.get("seconds") for p in result.get("passes", [])}
    return [{**s, "seconds": seconds.get(s.get("stage"))} for s in result.get("stages", [])]


def deployable(result: dict[str, Any]) -> dict[str, Any]:
    """The deployable model files (``result.json`` artifacts of a runtime's kind) with path, precision, backend."""
    return {
        name: {k: a.get(k) for k in ("path", "kind", "precision", "backend", "bytes")}
        for name, a in result.get("artifacts", {}).items()
        if a.get("kind") in ("onnx", "tflite", "engine")
    }


def compile_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    config = HERE / f"{name}.yaml"
    t0 = time.perf_counter()
    res = edgekd.compile(config, target=TARGET, out=CACHE / "runs", use_cache=False, quiet=args.quiet)
    wall = time.perf_counter() - t0
    result = json.loads((res.run_dir / "result.json").read_text())
    return {
        "config": str(config.relative_to(ROOT)),
        "run_dir": str(res.run_dir.relative_to(ROOT)),
        "seconds_total": round(wall, 1),
        "stages": per_stage(result),
        "pass_table": result.get("pass_table"),
        "deployable": result.get("deployable"),
        "files": deployable(result),
        "metrics": {k: res.metrics.get(k) for k in METRICS},
        "notes": res.notes,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    doc: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    doc.update({"issue": 15, "host": f"{platform.machine()}, {torch.get_num_threads()} torch threads"})
    doc.setdefault("models", {})
    for name in args.models:
        entry: dict[str, Any] = {}
        if name == "plain-cnn":
            entry["teacher_training"] = train_plain_cnn(args.teacher_epochs)
        entry.update(compile_one(name, args))
        entry["date"] = time.ctime()
        doc["models"][name] = entry
        atomic_write_bytes(args.out, (json.dumps(doc, indent=1, default=str) + "\n").encode())
        print(json.dumps({k: entry[k] for k in ("seconds_total", "stages", "deployable")}, indent=1, default=str))
    doc["command"] = "python benchmarks/byom.py " + " ".join(sys.argv[1:])
    atomic_write_bytes(args.out, (json.dumps(doc, indent=1, default=str) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
