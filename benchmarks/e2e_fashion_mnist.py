"""End-to-end benchmark of the foundation pipeline on the full Fashion-MNIST set.

    python benchmarks/e2e_fashion_mnist.py [--set passes[0].distill.epochs=10 ...]

Compiles ``examples/fashion-mnist/model.yaml`` for the host (x86-cpu) with ``edgekd.compile``
(the figures are the product's own measurements: accuracy of each artifact in its runtime on the
full 10k test set), then re-measures teacher fp32 / student fp32 / student INT8 ONNX latency side
by side in one runner process (interleaved rounds, medians) with more repeats than the profile pass.
Writes ``benchmarks/results/e2e_fashion_mnist.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgekd
from edgekd.core.artifacts import atomic_write_bytes
from edgekd.data.sources import FASHION_MNIST_SYSTEM
from edgekd.latency.measure import measure

CONFIG = ROOT / "examples" / "fashion-mnist" / "model.yaml"
OUT = ROOT / "benchmarks" / "results" / "e2e_fashion_mnist.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], help="model.yaml override, as edgekd compile --set")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench"), help="run folder root")
    ap.add_argument("--repeats", type=int, default=5, help="side-by-side latency measurements (medians taken)")
    ap.add_argument("--runs", type=int, default=500, help="timed runs per model per measurement")
    args = ap.parse_args()
    if not FASHION_MNIST_SYSTEM.is_dir():
        sys.exit(f"needs the full Fashion-MNIST set: apt-get install dataset-fashion-mnist ({FASHION_MNIST_SYSTEM})")

    t0 = time.perf_counter()
    res = edgekd.compile(CONFIG, target="x86-cpu", out=args.out, overrides=args.set, use_cache=False)
    compile_s = time.perf_counter() - t0
    r = res.result
    arts = r["artifacts"]

    models = {
        "teacher_fp32": res.artifacts["teacher_onnx"],
        "student_fp32": res.artifacts["onnx"],
        "student_int8": res.artifacts["onnx_int8"],
    }
    threads = r["profile"]["threads"]
    per_model: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.repeats):
        stats = measure(list(models.values()), threads=threads, warmup=50, runs=args.runs, rounds=5, batch=1)
        for name, s in zip(models, stats, strict=True):
            per_model[name].append(s.p50_ms)
    p50 = {k: statistics.median(v) for k, v in per_model.items()}

    teacher_acc = r["teacher"]["test_accuracy"]
    int8_acc = arts["onnx_int8"]["accuracy"]
    result = {
        "benchmark": "e2e_fashion_mnist",
        "command": "python benchmarks/e2e_fashion_mnist.py " + " ".join(f"--set {s}" for s in args.set),
        "config": str(CONFIG.relative_to(ROOT)),
        "overrides": args.set,
        "run_id": r["run_id"],
        "data": r["data"],
        "teacher": {
            "arch": r["teacher"]["params_spec"],
            "params": r["teacher"]["params"],
            "macs": r["teacher"]["macs"],
            "test_accuracy_pytorch": teacher_acc,
        },
        "student": {
            "arch": r["student"]["params_spec"],
            "params": r["student"]["params"],
            "macs": r["student"]["macs"],
            "distill": {
                k: r["student"]["distill"][k] for k in ("best_epoch", "val_accuracy", "test_accuracy", "seconds")
            },
        },
        "accuracy_test_10k": {
            "teacher_fp32_pytorch": teacher_acc,
            "student_fp32_onnxruntime": arts["onnx"]["accuracy"],
            "student_int8_onnxruntime": int8_acc,
        },
        "size_bytes": {
            "teacher_fp32": arts["teacher_onnx"]["bytes"],
            "student_fp32": arts["onnx"]["bytes"],
            "student_int8": arts["onnx_int8"]["bytes"],
        },
        "parity": {"student_fp32": arts["onnx"]["parity"], "student_int8": arts["onnx_int8"]["parity"]},
        "latency_p50_ms": {
            "median_of_repeats": p50,
            "repeats": per_model,
            "runs_per_repeat": args.runs,
            "batch": 1,
            "threads": threads,
            "runtime": "onnxruntime " + r["environment"]["onnxruntime"],
            "where": f"host {platform.machine()}, {os.cpu_count()} cores, interleaved in one process",
        },
        "ratios": {
            "teacher_fp32_over_student_int8": p50["teacher_fp32"] / p50["student_int8"],
            "teacher_fp32_over_student_fp32": p50["teacher_fp32"] / p50["student_fp32"],
            "student_fp32_over_student_int8": p50["student_fp32"] / p50["student_int8"],
            "size_teacher_over_student_int8": arts["teacher_onnx"]["bytes"] / arts["onnx_int8"]["bytes"],
        },
        "goals": {
            "int8_within_1.5_points_of_teacher": teacher_acc - int8_acc <= 1.5,
            "accuracy_drop_points": teacher_acc - int8_acc,
            "latency_at_least_3x_lower": p50["teacher_fp32"] / p50["student_int8"] >= 3.0,
        },
        "compile_seconds": compile_s,
        "environment": r["environment"],
    }
    atomic_write_bytes(OUT, (json.dumps(result, indent=2) + "\n").encode())
    print(json.dumps({k: result[k] for k in ("accuracy_test_10k", "latency_p50_ms", "ratios", "goals")}, indent=2))


if __name__ == "__main__":
    main()
