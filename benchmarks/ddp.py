"""Wall time of the same distillation in 1 vs 2 processes (DDP, gloo on CPU), and agreement of the ranks.

    python benchmarks/ddp.py [--epochs 2] [--train 10000]

On a 2-core machine no speed-up is expected (both processes share the cores and gloo all-reduces
every step); the point is that the data-parallel path is correct and ready for machines with more
cores or GPUs. Writes ``benchmarks/results/ddp.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgekd
from edgekd.core.artifacts import atomic_write_bytes

CONFIG = ROOT / "examples" / "fashion-mnist" / "model.yaml"
OUT = ROOT / "benchmarks" / "results" / "ddp.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-ddp"))
    args = ap.parse_args()
    distill = {"epochs": args.epochs, "augment": False, "loss": {"ce": 0.1, "kd": {"weight": 0.9, "temperature": 4}}}
    overrides = [f"data.train_limit={args.train}", f"passes={json.dumps([{'distill': distill}, {'report': {}}])}"]
    results = {}
    for nproc in (1, 2):
        t0 = time.perf_counter()
        res = edgekd.compile(CONFIG, out=args.out, overrides=overrides, nproc=nproc, use_cache=False, quiet=True)
        d = res.metrics["distill"]
        events = [json.loads(line) for line in (res.run_dir / "events.jsonl").read_text().splitlines() if line]
        pass_s = next(e["seconds"] for e in events if e.get("event") == "pass_end" and e.get("pass_") == "distill")
        results[f"nproc_{nproc}"] = {
            "compile_wall_seconds": round(time.perf_counter() - t0, 1),
            "distill_pass_seconds": pass_s,
            "training_loop_seconds_rank0": d["seconds"],
            "test_accuracy": d["test_accuracy"],
            "distributed": d.get("distributed"),
        }
        print(nproc, results[f"nproc_{nproc}"], flush=True)
    doc = {
        "benchmark": "ddp",
        "command": "python benchmarks/ddp.py " + " ".join(sys.argv[1:]),
        "cores": os.cpu_count(),
        "train_images": args.train,
        "epochs": args.epochs,
        "results": results,
        "speedup_2_over_1": {
            "distill_pass": results["nproc_1"]["distill_pass_seconds"] / results["nproc_2"]["distill_pass_seconds"],
            "training_loop": results["nproc_1"]["training_loop_seconds_rank0"]
            / results["nproc_2"]["training_loop_seconds_rank0"],
        },
        "what": "distill_pass: the whole pass as the user waits for it (for nproc 2: launching torchrun, each rank "
        "loading the teacher and computing its logits, training, gathering); training_loop: rank 0's epochs only "
        "(each rank trains on half the images and all-reduces gradients every step)",
    }
    atomic_write_bytes(OUT, (json.dumps(doc, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
