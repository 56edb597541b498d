"""Distillation objectives compared on Fashion-MNIST with the example teacher and one fixed student.

    python benchmarks/kd_losses.py [--seeds 3] [--epochs 3] [--train 10000]

Every run is a real ``edgekd.compile`` of the example config with only the distill pass changed
(same student ResNet-8 w16, same data, epochs, optimizer and seeds for every objective); accuracy
is the student's on the full 10k test set. Also: data fraction 0.1 / 0.3 / 1.0 of the training
subset with and without KD. Writes ``benchmarks/results/kd_losses.json``. Runs are cached under
``runs/bench-kd/.cache``, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgekd
from edgekd.core.artifacts import atomic_write_bytes

CONFIG = ROOT / "examples" / "fashion-mnist" / "model.yaml"
OUT = ROOT / "benchmarks" / "results" / "kd_losses.json"
L3 = [{"student": "layer3", "teacher": "layer3"}]
ALL = [{"student": f"layer{i}", "teacher": f"layer{i}"} for i in (1, 2, 3)]
KD = {"weight": 0.9, "temperature": 4}

OBJECTIVES: dict[str, dict] = {
    "ce_only": {"loss": {"ce": 1.0}},
    "kd": {"loss": {"ce": 0.1, "kd": KD}},
    "dkd": {"loss": {"ce": 1.0, "dkd": {"weight": 1.0, "alpha": 1, "beta": 8, "temperature": 4, "warmup_steps": 200}}},
    "dist": {"loss": {"ce": 1.0, "dist": {"weight": 2.0, "temperature": 4}}},
    "sinkhorn": {"loss": {"ce": 1.0, "sinkhorn": {"weight": 1.0, "temperature": 4}}},
    "fitnet": {"loss": {"ce": 1.0, "fitnet": {"weight": 1.0, "pairs": L3}}},
    "at": {"loss": {"ce": 1.0, "at": {"weight": 1000.0, "pairs": ALL}}},
    "sp": {"loss": {"ce": 1.0, "sp": {"weight": 3000.0, "pairs": L3}}},
    "rkd": {"loss": {"ce": 1.0, "rkd": {"weight": 1.0, "pairs": L3}}},
    "diswot": {
        "loss": {
            "ce": 1.0,
            "diswot_semantic": {"weight": 10.0, "pairs": L3},
            "diswot_relation": {"weight": 10.0, "pairs": L3},
        }
    },
    # the DisWOT paper trains with KD plus its two distillers
    "diswot_kd": {
        "loss": {
            "ce": 0.1,
            "kd": KD,
            "diswot_semantic": {"weight": 1.0, "pairs": L3},
            "diswot_relation": {"weight": 1.0, "pairs": L3},
        }
    },
    "kd_inherit": {"loss": {"ce": 0.1, "kd": KD}, "init": "inherit"},
}


def run(distill: dict, train: int, seed: int, out: str) -> dict:
    passes = [{"distill": distill}, {"report": {}}]
    overrides = [f"data.train_limit={train}", f"passes={json.dumps(passes)}", f"seed={seed}"]
    t0 = time.perf_counter()
    res = edgekd.compile(CONFIG, target="x86-cpu", out=out, overrides=overrides, quiet=True)
    d = res.metrics["distill"]
    return {
        "test_accuracy": d["test_accuracy"],
        "val_accuracy": d["val_accuracy"],
        "seconds": d["seconds"],
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "train_samples": d["train_samples"],
        "inherited": d.get("inherited"),
    }


def summary(values: list[float]) -> dict:
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train", type=int, default=10000, help="training images (first N of the shuffled train split)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-kd"))
    ap.add_argument("--only", nargs="*", help="objectives to run (default: all)")
    args = ap.parse_args()
    base = {
        "epochs": args.epochs,
        "batch_size": 128,
        "augment": False,
        "optimizer": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
        "schedule": "onecycle",
    }
    seeds = range(args.seeds)
    results: dict = {"objectives": {}, "fractions": {}}
    for name, extra in OBJECTIVES.items():
        if args.only and name not in args.only:
            continue
        runs = [run({**base, **extra}, args.train, seed, args.out) for seed in seeds]
        results["objectives"][name] = {
            "config": extra,
            "test_accuracy": summary([r["test_accuracy"] for r in runs]),
            "seconds_per_run": statistics.mean(r["seconds"] for r in runs),
            "inherited": runs[0]["inherited"],
        }
        acc = results["objectives"][name]["test_accuracy"]
        secs = results["objectives"][name]["seconds_per_run"]
        print(f"{name:12s} {acc['mean']:.2f} ± {acc['std']:.2f}  ({secs:.0f}s/run)", flush=True)
    if not args.only:
        for frac in (0.1, 0.3, 1.0):
            for name in ("ce_only", "kd"):
                if frac == 1.0:  # all the images: the same runs (config, seeds) as the objective rows above
                    obj = results["objectives"][name]
                    results["fractions"][f"{name}@{frac}"] = {
                        "test_accuracy": obj["test_accuracy"],
                        "train_samples": args.train,
                        "same_runs_as": f"objectives.{name}",
                    }
                    continue
                runs = [run({**base, **OBJECTIVES[name], "fraction": frac}, args.train, s, args.out) for s in seeds]
                acc = summary([r["test_accuracy"] for r in runs])
                n_train = runs[0]["train_samples"]
                results["fractions"][f"{name}@{frac}"] = {"test_accuracy": acc, "train_samples": n_train}
                print(f"fraction {frac}: {name:8s} {acc['mean']:.2f} ± {acc['std']:.2f}", flush=True)
    objs = results["objectives"]
    if "ce_only" in objs:
        ce = objs["ce_only"]["test_accuracy"]
        margin = {n: o["test_accuracy"]["mean"] - ce["mean"] for n, o in objs.items() if n != "ce_only"}
        # "more than the seed spread": the gain exceeds the two standard deviations added together
        spread = {n: ce["std"] + o["test_accuracy"]["std"] for n, o in objs.items() if n != "ce_only"}
        results["vs_ce_only"] = {
            "gain_points": margin,
            "seed_spread": spread,
            "rule": "gain > std(ce_only) + std(objective), both over the same seeds",
            "beat_ce_by_more_than_spread": sorted(n for n, g in margin.items() if g > spread[n]),
            "did_not": sorted(n for n, g in margin.items() if g <= spread[n]),
        }
    results["recipe"] = {
        "teacher": "examples/fashion-mnist/teacher.pt (ResNet-20 w32, 94.19%)",
        "student": "ResNet-8 w16",
        "train_images": args.train,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "test": "full Fashion-MNIST test set (10,000)",
        **base,
    }
    results["command"] = "python benchmarks/kd_losses.py " + " ".join(sys.argv[1:])
    results["ddp"] = "see benchmarks/results/ddp.json (python benchmarks/ddp.py)"
    if not args.only:
        atomic_write_bytes(OUT, (json.dumps(results, indent=2) + "\n").encode())
    print(json.dumps(results.get("vs_ce_only", {}), indent=2))


if __name__ == "__main__":
    main()
