"""EfficientNet-Lite0 (ImageNet-pretrained) compressed for a Raspberry Pi 4's LiteRT, on real photo crops.

    python benchmarks/efficientnet_lite0.py [--set passes[0].distill.epochs=3 ...]

Compiles ``examples/efficientnet-lite0/model.yaml`` for ``raspberry-pi-4`` (its SSH device is not reachable
from here, and the example has no profile pass: the compile writes and checks the files), converts the teacher
to an fp32 ``.tflite`` with the same converter, and times teacher fp32, student fp32 and student INT8 ``.tflite``
side by side in one runner process on this host's LiteRT with XNNPACK (interleaved rounds; medians over
repeats). The measure without ImageNet labels: top-1 agreement with the teacher and logit cosine on the test
crops, cut from photos the student never saw. Writes ``benchmarks/results/efficientnet_lite0.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

import edgekd
from edgekd.backends.base import open_model
from edgekd.backends.tflite.lower import convert_tflite
from edgekd.core.artifacts import atomic_write_bytes
from edgekd.latency.measure import measure
from edgekd.models.count import count_macs, count_params

EXAMPLE = ROOT / "examples" / "efficientnet-lite0"
OUT = ROOT / "benchmarks" / "results" / "efficientnet_lite0.json"


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="model.yaml", help="the example's model.yaml to compile (shrink.yaml: the "
                    "teacher shrunk, weights inherited)")  # fmt: skip
    ap.add_argument("--set", action="append", default=[], help="model.yaml override, as edgekd compile --set")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-lite0"), help="run folder root")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="LiteRT threads (this host has 2 cores)")
    ap.add_argument("--result", type=Path, default=OUT, help="the JSON to write (another student: another file)")
    args = ap.parse_args()
    if not (EXAMPLE / "photos.npz").is_file():
        subprocess.run([sys.executable, str(EXAMPLE / "prepare_photos.py")], check=True)

    t0 = time.perf_counter()
    res = edgekd.compile(EXAMPLE / args.config, target="raspberry-pi-4", out=args.out, overrides=args.set,
                         use_cache=False)  # fmt: skip
    compile_s = time.perf_counter() - t0
    r = res.result
    arts = r["artifacts"]

    sys.path.insert(0, str(EXAMPLE))
    from lite0 import teacher as build_teacher

    teacher = build_teacher().eval()
    with np.load(EXAMPLE / "photos.npz") as f:
        raw_test = f["x_test"]
    mean = torch.tensor(r["data"]["normalize"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(r["data"]["normalize"]["std"]).view(1, 3, 1, 1)
    x_test = (torch.from_numpy(raw_test).float() / 255 - mean) / std
    t1 = time.perf_counter()
    teacher_tflite = convert_tflite(teacher, x_test[:1], res.run_dir / "teacher.fp32.tflite", precision="fp32")
    teacher_convert_s = time.perf_counter() - t1
    with torch.no_grad():
        t_logits = torch.cat([teacher(x_test[i : i + 50]) for i in range(0, len(x_test), 50)]).numpy()

    files = {"teacher_fp32": teacher_tflite, "student_fp32": res.artifacts["tflite_fp32"],
             "student_int8": res.artifacts["tflite_int8"]}  # fmt: skip
    fidelity = {}
    for name in ("student_fp32", "student_int8"):
        logits = open_model(files[name], threads=args.threads).predict(x_test.numpy())
        fidelity[name] = {
            "top1_agreement_with_teacher": round(float((logits.argmax(1) == t_logits.argmax(1)).mean() * 100), 2),
            "logit_cosine_with_teacher": round(_cosine(logits, t_logits), 4),
        }
    p50: dict[str, list[float]] = {k: [] for k in files}
    for _ in range(args.repeats):
        stats = measure(list(files.values()), threads=args.threads, warmup=10, runs=args.runs, rounds=3, batch=1)
        for name, s in zip(files, stats, strict=True):
            p50[name].append(s.p50_ms)
    med = {k: statistics.median(v) for k, v in p50.items()}
    shape = (3, 224, 224)
    out = {
        "benchmark": "efficientnet_lite0",
        "command": "python benchmarks/efficientnet_lite0.py "
        + " ".join(
            [
                *([f"--config {args.config}"] if args.config != "model.yaml" else []),
                *(f"--set '{s}'" for s in args.set),
                *([f"--result {args.result}"] if args.result != OUT else []),
            ]
        ),
        "host": f"{platform.machine()}, {platform.processor() or 'cpu'}, LiteRT XNNPACK {args.threads} threads",
        "note": "measured on this host's LiteRT: the raspberry-pi-4 target's device is not reachable from here",
        "data": r["data"]["source"],
        "photos": json.loads((EXAMPLE / "photos.json").read_text()),
        "teacher": {
            "params": count_params(teacher),
            "macs": count_macs(teacher, shape),
            "val_agreement_reference": r["teacher"]["val_accuracy"],
        },
        "student": {
            "arch": r["student"]["arch"],
            "params": r["student"]["params"],
            "macs": r["student"]["macs"],
            "distill": {k: r["student"]["distill"][k] for k in ("epochs", "val_accuracy", "test_accuracy", "seconds")},
        },
        "artifacts": {
            n: {k: arts[n].get(k) for k in ("bytes", "accuracy", "parity")} for n in ("tflite_fp32", "tflite_int8")
        },
        "fidelity_on_test_photos": fidelity,
        "p50_ms": {k: round(v, 3) for k, v in med.items()},
        "p50_ms_repeats": {k: [round(x, 3) for x in v] for k, v in p50.items()},
        "speedup_int8_vs_teacher_fp32": round(med["teacher_fp32"] / med["student_int8"], 2),
        "speedup_fp32_vs_teacher_fp32": round(med["teacher_fp32"] / med["student_fp32"], 2),
        "compile_seconds": round(compile_s, 1),
        "teacher_tflite_convert_seconds": round(teacher_convert_s, 1),
        "seed": r.get("seed", 0),
        "versions": r["environment"],
    }
    atomic_write_bytes(args.result, (json.dumps(out, indent=2, default=str) + "\n").encode())
    print(json.dumps({k: out[k] for k in ("p50_ms", "speedup_int8_vs_teacher_fp32", "fidelity_on_test_photos")},
                     indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
