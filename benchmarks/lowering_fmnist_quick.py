"""Quick Fashion-MNIST check of TFLite files already converted by benchmarks/lowering.py (run cut at the deadline).

    python benchmarks/lowering_fmnist_quick.py FOLDER [--n 1000]

Accuracy of each .tflite in FOLDER on the first N test images (LiteRT, XNNPACK) next to the PyTorch example
teacher, and one side-by-side latency run (1 thread, batch 1, interleaved rounds, p50). Adds ``fmnist_quick`` to
benchmarks/results/lowering.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd.backends.tflite.runtime import LiteRTModel, op_summary
from edgekd.compiler.plan import load_model_config
from edgekd.core.artifacts import atomic_write_bytes
from edgekd.data import load_data
from edgekd.latency.measure import measure
from edgekd.models.build import build, load_weights

OUT = ROOT / "benchmarks" / "results" / "lowering.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    cfg = load_model_config(ROOT / "examples" / "fashion-mnist" / "model.yaml")
    model = build(cfg.teacher, "teacher")
    assert cfg.teacher.checkpoint is not None
    load_weights(model, cfg.resolve(cfg.teacher.checkpoint), "teacher")
    model.eval()
    data = load_data(cfg.data, cfg.calibration, cfg.base_dir, cfg.seed)
    x, y = data.test.x[: args.n], data.test.y[: args.n].numpy()
    with torch.no_grad():
        ref = torch.cat([model(x[i : i + 100]) for i in range(0, len(x), 100)]).numpy()
    files = sorted(args.folder.glob("*.tflite"))
    rows: dict = {}
    for f in files:
        out = LiteRTModel(f, threads=1).predict(x.numpy())
        rows[f.stem] = {
            "bytes": f.stat().st_size,
            "accuracy": float((out.argmax(1) == y).mean() * 100),
            "top1_agreement_vs_pytorch": float((out.argmax(1) == ref.argmax(1)).mean() * 100),
            "max_abs_diff": float(abs(out - ref).max()),
            "graph": op_summary(f),
        }
        print(f.stem, rows[f.stem]["accuracy"], rows[f.stem]["top1_agreement_vs_pytorch"])
    stats = measure(files, threads=1, warmup=20, runs=200, rounds=5)
    for f, s in zip(files, stats, strict=True):
        rows[f.stem]["p50_ms_1_thread"] = s.p50_ms
    fp32 = rows["fp32"]["p50_ms_1_thread"]
    for r in rows.values():
        r["speedup_vs_tflite_fp32"] = round(fp32 / r["p50_ms_1_thread"], 3)
    doc = json.loads(OUT.read_text())
    doc["models"]["fmnist_quick"] = {
        "name": "fashion-mnist example teacher (ResNet-20 w32), quick check",
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python benchmarks/lowering_fmnist_quick.py FOLDER --n " + str(args.n),
        "data": f"first {args.n} images of the Fashion-MNIST test split",
        "pytorch_accuracy": float((ref.argmax(1) == y).mean() * 100),
        "latency_method": "one runner process, 1 thread, XNNPACK, batch 1, 200 runs in 5 interleaved rounds, p50",
        "artifacts": rows,
    }
    atomic_write_bytes(OUT, (json.dumps(doc, indent=2) + "\n").encode())
    print(json.dumps({k: (v["accuracy"], v["p50_ms_1_thread"], v["speedup_vs_tflite_fp32"]) for k, v in rows.items()}))


if __name__ == "__main__":
    main()
