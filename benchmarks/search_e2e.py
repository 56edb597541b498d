"""Student search end to end: a DisWOT search under a latency budget on this host, checked by measuring
the chosen student again, then distilled with the same recipe as the hand-picked zoo student.

    python benchmarks/search_e2e.py [--spaces resnet mobilenet] [--budget-factor 1.0]

The hand-picked student is the example's ResNet-8 w16. The latency budget is its own batch-1 latency
on this host (ONNX Runtime, the x86-cpu target's 2 threads, median of three measurements, times
``--budget-factor``), so the search looks for a student at most as slow. The search is a real
``edgekd.stages.search`` of a config with the example teacher and only the search pass; then the chosen and the
hand-picked student are measured again, interleaved (``--verify-repeats`` medians of 200 runs each),
and both are distilled with ``nas_common.RECIPE`` (10k images, 3 epochs, CE 0.1 + KD 0.9 T=4) and
evaluated on the full 10k test split. Writes ``benchmarks/results/search_e2e.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nas_common as nc

from edgekd import api
from edgekd.core.artifacts import atomic_write_bytes
from edgekd.latency.in_process import quick_latency_ms
from edgekd.models.count import count_macs, count_params

OUT = nc.ROOT / "benchmarks" / "results" / "search_e2e.json"
HAND = {"depth": 8, "width": 16, "in_channels": 1, "num_classes": 10}
SHAPE = (1, 28, 28)
THREADS = 2  # targets/x86-cpu.yaml runtime.threads
SPACES = {
    "resnet": {"blocks": [[1, 2, 3]] * 3, "widths": [[8, 16, 24], [16, 32, 48], [32, 64, 96]], "kernel": [3, 5]},
    "mobilenet": {
        "type": "mobilenet",
        "depths": [[1, 2], [1, 2, 3], [1, 2, 3]],
        "widths": [[8, 16], [16, 24, 32], [32, 48, 64]],
        "expand": [[1, 3, 6]] * 3,
        "kernel": [[3, 5]] * 3,
    },
}


def latency(model: torch.nn.Module, runs: int = 200) -> float:
    return quick_latency_ms(model.eval(), SHAPE, THREADS, warmup=20, runs=runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spaces", nargs="*", default=list(SPACES), choices=list(SPACES))
    ap.add_argument("--budget-factor", type=float, default=1.0)
    ap.add_argument("--population", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=36)
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--verify-repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--cache", default=str(nc.ROOT / "runs" / "bench-nas"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cache, runs = Path(args.cache), nc.ROOT / "runs" / "bench-search"
    runs.mkdir(parents=True, exist_ok=True)
    hand = nc.build("resnet", HAND, args.seed)
    hand_lat = [latency(hand) for _ in range(3)]
    budget = round(statistics.median(hand_lat) * args.budget_factor, 4)
    print(f"hand-picked ResNet-8 w16: {statistics.median(hand_lat):.4f} ms -> budget {budget} ms", flush=True)
    data = nc.load(args.train, args.seed)
    t = nc.teacher()
    logits = nc.teacher_logits(t, data, cache)
    hand_kd = nc.train_candidate("resnet", HAND, "kd", data, t, logits, cache, seed=args.seed)
    print(f"hand-picked distilled: test {hand_kd['test_accuracy']:.2f}", flush=True)
    doc: dict = {
        "host": "x86-64, 2 cores shared with other jobs; ONNX Runtime, batch 1, 2 threads",
        "hand_picked": {
            "arch": "resnet",
            "params_spec": HAND,
            "params": count_params(hand),
            "macs": count_macs(hand, SHAPE),
            "latency_ms_budget_measurements": hand_lat,
            "kd_test_accuracy": hand_kd["test_accuracy"],
            "kd_val_accuracy": hand_kd["val_accuracy"],
        },
        "budget_ms": budget,
        "recipe": {**nc.RECIPE, "loss": nc.LOSSES["kd"], "train_images": args.train, "seed": args.seed},
        "searches": {},
    }
    for name in args.spaces:
        config = {
            "name": f"bench-search-{name}",
            "teacher": {"arch": "resnet", "params": nc.TEACHER_PARAMS, "checkpoint": str(nc.TEACHER)},
            # the search never reads the test split: a short one keeps the teacher's baseline evaluation cheap
            "data": {"source": "fashion-mnist", "train_limit": args.train, "test_limit": 500},
            "seed": args.seed,
            "passes": [
                {
                    "search": {
                        "space": SPACES[name],
                        "proxy": "diswot",
                        "population": args.population,
                        "iterations": args.iterations,
                        "budget": {"latency_ms": budget},
                    }
                }
            ],
        }
        path = runs / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        t0 = time.perf_counter()
        res = api.search(path, target="x86-cpu", out=runs, quiet=True)
        seconds = time.perf_counter() - t0
        found = json.loads(res.artifacts["search_json"].read_text())
        chosen = res.metrics["student"]
        arch, params = chosen["arch"], chosen["params_spec"]
        print(f"[{name}] chose {found['chosen']['label']} in {seconds:.0f}s", flush=True)
        model = nc.build(arch, params, args.seed)
        again: dict[str, list[float]] = {"chosen": [], "hand_picked": []}
        for _ in range(args.verify_repeats):  # interleaved, so both see the same load
            again["chosen"].append(latency(model))
            again["hand_picked"].append(latency(hand))
        kd = nc.train_candidate(arch, params, "kd", data, t, logits, cache, seed=args.seed)
        lat = statistics.median(again["chosen"])
        history = found["history"]
        doc["searches"][name] = {
            "space": SPACES[name],
            "space_size": found["space_size"],
            "evaluated_unique": found["evaluated_unique"],
            "rejected_over_budget": found["rejected"],
            "search_seconds": round(seconds, 1),
            "max_latency_in_history_ms": max(h["latency_ms"] for h in history),
            "every_candidate_within_budget_when_scored": all(h["latency_ms"] <= budget for h in history),
            "chosen": {
                "arch": arch,
                "label": found["chosen"]["label"],
                "params_spec": params,
                "params": chosen["params"],
                "macs": chosen["macs"],
                "diswot_score": found["chosen"]["score"],
                "latency_ms_in_search": found["chosen"]["latency_ms"],
                "latency_ms_verified": again["chosen"],
                "kd_test_accuracy": kd["test_accuracy"],
                "kd_val_accuracy": kd["val_accuracy"],
            },
            "hand_picked_latency_ms_verified": again["hand_picked"],
            "verified_latency_ms_median": lat,
            "verified_within_budget": lat <= budget,
            "verified_latency_ratio_chosen_over_hand": lat / statistics.median(again["hand_picked"]),
            "accuracy_gain_points_vs_hand_picked": kd["test_accuracy"] - hand_kd["test_accuracy"],
            "pareto": [{k: r[k] for k in ("label", "score", "params", "latency_ms")} for r in found["pareto"]],
        }
        s = doc["searches"][name]
        print(
            f"[{name}] verified {lat:.4f} ms (budget {budget}, within: {s['verified_within_budget']}); "
            f"KD test {kd['test_accuracy']:.2f} vs hand-picked {hand_kd['test_accuracy']:.2f} "
            f"({s['accuracy_gain_points_vs_hand_picked']:+.2f} pt)",
            flush=True,
        )
        doc["command"] = "python benchmarks/search_e2e.py " + " ".join(sys.argv[1:])
        atomic_write_bytes(Path(args.out), (json.dumps(doc, indent=2) + "\n").encode())  # after every space


if __name__ == "__main__":
    main()
