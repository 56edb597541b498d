"""What does ranking a space by DisWOT cost, against ranking it by one epoch of distillation per candidate?

    python benchmarks/proxy_cost.py [--steps N]

Same space (27 ResNets, ``proxy_correlation.space()``), data, teacher and recipe as the correlation
benchmark, in one process: for each candidate in turn, one DisWOT score (one real batch of 64) and
then one epoch of KD training with the short recipe (10k images, batch 128, CE 0.1 + KD 0.9, no
validation), so load changes on the shared host hit both alike. The teacher's one-off costs are
counted once on each side: its DisWOT statistics for the batch, and its logits on the 10k images.
``--steps N`` times only N steps of each epoch (steps 4..3+N of one run, by a per-step clock) and
scales to the full epoch (the JSON says so); the default times whole epochs.
Writes ``benchmarks/results/proxy_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nas_common as nc
from proxy_correlation import probe_batches, space

from edgekd.core.artifacts import atomic_write_bytes
from edgekd.data.dataset import Split
from edgekd.stages.search import proxies
from edgekd.train.loop import NullProgress, predict
from edgekd.train.objective import fit

OUT = nc.ROOT / "benchmarks" / "results" / "proxy_cost.json"


class StepClock(NullProgress):
    """A progress sink that notes the time at the end of every training step."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def advance(self, n: int = 1, **fields: float) -> None:
        self.stamps.append(time.perf_counter())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=None, help="time this many steps per epoch and scale (default: all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = nc.load(args.train)
    t = nc.teacher()
    batch = probe_batches(data, 1, 64, 0)[0]
    recipe = nc.recipe("kd", 0, epochs=1)
    steps_per_epoch = math.ceil(len(data.train) / recipe.settings.batch_size)

    t0 = time.perf_counter()
    proxies.teacher_stats(t, batch, 0)
    teacher_diswot = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict(t, data.train.x[:2000])  # timed on 2,000 images and scaled; the logits themselves come from the cache
    teacher_logits = (time.perf_counter() - t0) * len(data.train) / 2000
    logits = nc.teacher_logits(t, data, nc.ROOT / "runs" / "bench-nas")
    print(f"teacher: DisWOT statistics {teacher_diswot:.2f}s, logits on {len(data.train)} images {teacher_logits:.1f}s")

    rows = []
    for i, p in enumerate(space()):
        model = nc.build("resnet", p, 0)
        t0 = time.perf_counter()
        proxies.score("diswot", model, batch, t, seed=0)
        score_s = time.perf_counter() - t0
        if args.steps:  # the clock of steps 4..3+N inside one run, times the steps of an epoch
            bs, n = recipe.settings.batch_size, 3 + args.steps
            sub = Split(data.train.x[: n * bs], data.train.y[: n * bs])
            clock = StepClock()
            fit(model, model, t, sub, None, recipe, progress=clock, teacher_logits=logits[: n * bs])
            epoch_s = (clock.stamps[-1] - clock.stamps[2]) / args.steps * steps_per_epoch
        else:
            t0 = time.perf_counter()
            fit(model, model, t, data.train, None, recipe, teacher_logits=logits)
            epoch_s = time.perf_counter() - t0
        rows.append({"blocks": p["blocks"], "diswot_seconds": score_s, "kd_epoch_seconds": epoch_s})
        print(f"[{i + 1:2d}/27] blocks {p['blocks']}: DisWOT {score_s:.3f}s, KD epoch {epoch_s:.1f}s", flush=True)

    diswot_total = teacher_diswot + sum(r["diswot_seconds"] for r in rows)
    kd_total = teacher_logits + sum(r["kd_epoch_seconds"] for r in rows)
    doc = {
        "space": "27 ResNets, blocks per stage {1,2,3}^3, widths (8, 16, 32) (as proxy_correlation)",
        "host": "x86-64, 2 cores shared with other jobs, 1 torch thread",
        "epoch": f"{len(data.train)} images, batch {recipe.settings.batch_size}, {steps_per_epoch} steps, KD recipe, "
        + ("timed whole" if not args.steps else f"{args.steps} steps timed after 3 warm-up steps, scaled"),
        "teacher_diswot_statistics_seconds": teacher_diswot,
        "teacher_logits_seconds": teacher_logits,
        "teacher_logits_note": "timed on 2,000 of the training images, scaled to all of them",
        "candidates": rows,
        "median_seconds_per_diswot_score": statistics.median(r["diswot_seconds"] for r in rows),
        "median_seconds_per_kd_epoch": statistics.median(r["kd_epoch_seconds"] for r in rows),
        "rank_space_by_diswot_seconds": diswot_total,
        "rank_space_by_one_kd_epoch_seconds": kd_total,
        "ratio": kd_total / diswot_total,
        "ratio_diswot_averaged_over_5_batches": kd_total / (5 * diswot_total),
        "ratio_if_epoch_were_the_full_54k_split": kd_total * 54000 / len(data.train) / diswot_total,
        "goal_180x": kd_total / diswot_total >= 180,
        "command": "python benchmarks/proxy_cost.py " + " ".join(sys.argv[1:]),
    }
    atomic_write_bytes(Path(args.out), (json.dumps(doc, indent=2) + "\n").encode())
    print(json.dumps({k: v for k, v in doc.items() if k != "candidates"}, indent=2))


if __name__ == "__main__":
    main()
