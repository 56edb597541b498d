"""How well does each zero-cost proxy rank students by the accuracy they reach after distillation?

    python benchmarks/proxy_correlation.py                    # train what is missing, score, correlate
    python benchmarks/proxy_correlation.py --phase train --modes kd   # only train (e.g. kd and ce in two shells)

Space: ResNet students with blocks per stage in {1, 2, 3}^3 and widths (8, 16, 32) -- 27 architectures
from ResNet-8 to ResNet-20. Each is distilled from the example teacher (ResNet-20 w32, 94.19%) with
the same short recipe (``nas_common.RECIPE``: 10k training images, 3 epochs, batch 128, CE 0.1 + KD 0.9
T=4, SGD + OneCycle, best epoch by validation accuracy) and, separately, trained with plain CE; the
full 10k test split gives the accuracy that the proxies are correlated with. The test split is used
for nothing else: the DisWOT variants below are all reported, none is picked.

Every proxy scores every candidate on ``--batches`` real training batches (a different batch and a
different initialisation seed each); Kendall tau-b and Spearman rho are given for the mean score and
as mean +- std over the single-batch scores. Writes ``benchmarks/results/proxy_correlation.json``.
Trained candidates are cached under ``runs/bench-nas/``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nas_common as nc

from edgekd.core.artifacts import atomic_write_bytes
from edgekd.stages.search import proxies
from edgekd.stages.search.correlation import kendall_tau, spearman_rho
from edgekd.stages.search.proxies import ProbeBatch

OUT = nc.ROOT / "benchmarks" / "results" / "proxy_correlation.json"
BLOCKS = [(a, b, c) for a in (1, 2, 3) for b in (1, 2, 3) for c in (1, 2, 3)]
WIDTHS = [8, 16, 32]


def space() -> list[dict]:
    return [{"blocks": list(b), "widths": WIDTHS, "kernel": 3, "in_channels": 1, "num_classes": 10} for b in BLOCKS]


def train_all(modes: list[str], args: argparse.Namespace) -> dict[str, list[dict]]:
    data = nc.load(args.train)
    t = nc.teacher()
    logits = nc.teacher_logits(t, data, Path(args.cache))
    out: dict[str, list[dict]] = {}
    for mode in modes:
        out[mode] = []
        order = list(enumerate(space()))
        if args.indices:  # a worker given its own share of the space
            order = [order[i] for i in args.indices]
        for i, p in reversed(order) if args.reverse else order:
            t0 = time.perf_counter()
            r = nc.train_candidate("resnet", p, mode, data, t, logits, Path(args.cache), seed=args.seed)
            out[mode].append(r)
            print(
                f"[{mode} {i + 1:2d}/27] blocks {p['blocks']}: test {r['test_accuracy']:.2f} "
                f"val {r['val_accuracy']:.2f} ({time.perf_counter() - t0:.0f}s)",
                flush=True,
            )
    return out


def probe_batches(data, n: int, size: int, seed: int) -> list[ProbeBatch]:
    """``n`` disjoint real batches from the training split (never validation or test)."""
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(1000 + seed))
    return [ProbeBatch(data.train.x[idx], data.train.y[idx], data.num_classes) for idx in order[: n * size].split(size)]


def legacy_diswot(student: torch.nn.Module, teacher: torch.nn.Module, batch: ProbeBatch, seed: int) -> float:
    """DisWOT as first implemented: the teacher's initialisation drawn from the global stream after the
    candidate's, so each candidate met a different random teacher. Kept to show what the fix changed."""
    torch.manual_seed(seed)
    g_s, a_s = proxies._fc_grad_and_features(proxies.gaussian_init(copy.deepcopy(student)), batch)
    g_t, a_t = proxies._fc_grad_and_features(proxies.gaussian_init(copy.deepcopy(teacher)), batch)
    return -(proxies.semantic_distance(g_s, g_t) + proxies.relation_distance(a_s, a_t))


def score_all(args: argparse.Namespace, archs: list[dict]) -> tuple[dict[str, list[list[float]]], dict]:
    """scores[proxy][candidate][batch], and timings."""
    data = nc.load(args.train)
    t = nc.teacher()
    models = [nc.build("resnet", p, seed=0) for p in archs]
    batches = probe_batches(data, args.batches, args.batch_size, args.seed)
    scores: dict[str, list[list[float]]] = {}
    seconds: dict[str, list[float]] = {}

    def put(name: str, i: int, value: float) -> None:
        scores.setdefault(name, [[] for _ in models])[i].append(value)

    t0 = time.perf_counter()
    for b, batch in enumerate(batches):  # the teacher's statistics once per batch (shared by every candidate)
        proxies.teacher_stats(t, batch, b)
    teacher_once = (time.perf_counter() - t0) / len(batches)
    for i, m in enumerate(models):
        for b, batch in enumerate(batches):
            t0 = time.perf_counter()
            g_s, a_s = proxies.diswot_stats(m, batch, b)
            g_t, a_t = proxies.teacher_stats(t, batch, b)
            m_s, m_r = proxies.semantic_distance(g_s, g_t), proxies.relation_distance(a_s, a_t)
            seconds.setdefault("diswot", []).append(time.perf_counter() - t0)
            put("diswot", i, -(m_s + m_r))
            put("diswot_semantic_only", i, -m_s)
            put("diswot_relation_only", i, -m_r)
            put("diswot_pooled", i, -(proxies.semantic_distance(g_s, g_t, mismatch="pooled") + m_r))
            for name in proxies.PROXIES:
                if name == "diswot":
                    continue
                t0 = time.perf_counter()
                put(name, i, proxies.score(name, m, batch, t, seed=b))
                seconds.setdefault(name, []).append(time.perf_counter() - t0)
        print(f"scored {i + 1}/{len(models)}", flush=True)
    for (
        size
    ) in args.other_batch_sizes:  # is 64 the right batch size? (judged against KD accuracy, reported, not picked)
        other = probe_batches(data, args.batches, size, args.seed)
        for i, m in enumerate(models):
            for b, batch in enumerate(other):
                put(f"diswot_batch{size}", i, proxies.score("diswot", m, batch, t, seed=b))
    timing = {
        "median_seconds_per_score": {k: statistics.median(v) for k, v in seconds.items()},
        "diswot_teacher_statistics_seconds_once_per_batch": teacher_once,
    }
    return scores, timing


def legacy_scores(args: argparse.Namespace) -> list[list[float]]:
    """The first implementation's DisWOT (teacher redrawn per candidate) on the first ``--legacy-batches``
    probe batches; a teacher forward/backward per candidate and batch, so fewer batches. Cached."""
    key = [args.train, args.legacy_batches, args.batch_size, args.seed, nc.__version__]
    path = Path(args.cache) / f"legacy-{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    data, t = nc.load(args.train), nc.teacher()
    batches = probe_batches(data, args.batches, args.batch_size, args.seed)[: args.legacy_batches]
    out = []
    for i, p in enumerate(space()):
        m = nc.build("resnet", p, seed=0)
        out.append([legacy_diswot(m, t, batch, b) for b, batch in enumerate(batches)])
        print(f"legacy {i + 1}/27", flush=True)
    atomic_write_bytes(path, json.dumps(out).encode())
    return out


def correlate(scores: dict[str, list[list[float]]], acc: list[float]) -> dict[str, dict]:
    out = {}
    for name, per_cand in scores.items():
        mean = [statistics.mean(v) for v in per_cand]
        n_batches = len(per_cand[0])
        taus = [kendall_tau([v[b] for v in per_cand], acc) for b in range(n_batches)]
        rhos = [spearman_rho([v[b] for v in per_cand], acc) for b in range(n_batches)]
        out[name] = {
            "kendall_tau": kendall_tau(mean, acc),
            "spearman_rho": spearman_rho(mean, acc),
            "kendall_tau_single_batch": {"mean": statistics.mean(taus), "std": statistics.stdev(taus), "values": taus},
            "spearman_rho_single_batch": {"mean": statistics.mean(rhos), "std": statistics.stdev(rhos), "values": rhos},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=["all", "train", "score", "legacy"], default="all")
    ap.add_argument("--modes", nargs="*", default=["kd", "ce"])
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reverse", action="store_true", help="train from the end of the space (a second worker)")
    ap.add_argument("--indices", type=int, nargs="*", help="train only these candidates (0-based), in this order")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core host)")
    ap.add_argument("--other-batch-sizes", type=int, nargs="*", default=[32, 128])
    ap.add_argument(
        "--legacy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also score DisWOT with the teacher redrawn per candidate (the first implementation)",
    )
    ap.add_argument("--legacy-batches", type=int, default=2)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--partial", action="store_true", help="correlate the candidates trained so far (no training)")
    ap.add_argument("--cache", default=str(nc.ROOT / "runs" / "bench-nas"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.phase == "train":
        train_all(args.modes, args)
        return
    if args.phase == "legacy":
        legacy_scores(args)
        return
    key = {k: getattr(args, k) for k in ("train", "batches", "batch_size", "seed", "other_batch_sizes")}
    key["legacy"] = False  # scored apart (legacy_scores)
    cached = (
        Path(args.cache) / f"scores-{hashlib.sha256(json.dumps([key, nc.__version__]).encode()).hexdigest()[:16]}.json"
    )
    if cached.is_file():
        scores, timing = json.loads(cached.read_text())
    else:
        scores, timing = score_all(args, space())
        atomic_write_bytes(cached, json.dumps([scores, timing]).encode())
    if args.phase == "score":
        return
    if args.legacy:
        scores["diswot_teacher_redrawn"] = legacy_scores(args)
    if args.partial:  # only the candidates already trained in both modes (a progress report, not the result)
        data = nc.load(args.train)
        found = [
            (
                i,
                nc.cached_result("resnet", p, "kd", data, Path(args.cache), args.seed),
                nc.cached_result("resnet", p, "ce", data, Path(args.cache), args.seed),
            )
            for i, p in enumerate(space())
        ]
        keep = [i for i, k, c in found if k is not None and c is not None]
        trained = {"kd": [found[i][1] for i in keep], "ce": [found[i][2] for i in keep]}
        scores = {n: [v[i] for i in keep] for n, v in scores.items()}
        print(f"partial: {len(keep)} of 27 candidates trained in both modes: {keep}")
    else:
        trained = train_all(["kd", "ce"], args)
    kd = [r["test_accuracy"] for r in trained["kd"]]
    ce = [r["test_accuracy"] for r in trained["ce"]]
    vs_kd, vs_ce = correlate(scores, kd), correlate(scores, ce)
    vs_kd_val = correlate(scores, [r["val_accuracy"] for r in trained["kd"]])
    baselines = [n for n in proxies.PROXIES if n != "diswot"]
    best_baseline = max(baselines, key=lambda n: vs_kd[n]["kendall_tau"])
    doc = {
        "space": {"arch": "resnet", "blocks_per_stage": [1, 2, 3], "widths": WIDTHS, "kernel": 3, "size": len(BLOCKS)},
        "recipe": {
            **nc.RECIPE,
            "losses": nc.LOSSES,
            "train_images": args.train,
            "seed": args.seed,
            "teacher": "examples/fashion-mnist/teacher.pt (ResNet-20 w32, 94.19%)",
            "test": "full Fashion-MNIST test split (10,000), used only for these correlations",
        },
        "probe": {
            "batches": args.batches,
            "batch_size": args.batch_size,
            "seeds": "batch b uses initialisation seed b (candidate) and b + 2^20 (teacher)",
        },
        "candidates": [
            {
                "blocks": k["params"]["blocks"],
                "params": k["n_params"],
                "macs": k["macs"],
                "kd_test_accuracy": k["test_accuracy"],
                "kd_val_accuracy": k["val_accuracy"],
                "ce_test_accuracy": c["test_accuracy"],
                "ce_val_accuracy": c["val_accuracy"],
                "kd_seconds": k["seconds"],
                "ce_seconds": c["seconds"],
                "scores": {
                    n: {"mean": statistics.mean(v[i]), "std": statistics.stdev(v[i])} for n, v in scores.items()
                },
            }
            for i, (k, c) in enumerate(zip(trained["kd"], trained["ce"], strict=True))
        ],
        "vs_kd_accuracy": vs_kd,
        "vs_ce_accuracy": vs_ce,
        "vs_kd_validation_accuracy": {
            n: {k: v[k] for k in ("kendall_tau", "spearman_rho")} for n, v in vs_kd_val.items()
        },
        "kd_vs_ce_accuracy": {"kendall_tau": kendall_tau(kd, ce), "spearman_rho": spearman_rho(kd, ce)},
        "timing": timing,
        "goal": {
            "diswot_tau_vs_kd": vs_kd["diswot"]["kendall_tau"],
            "best_baseline": best_baseline,
            "best_baseline_tau_vs_kd": vs_kd[best_baseline]["kendall_tau"],
            "diswot_tau_at_least_every_baseline": all(
                vs_kd["diswot"]["kendall_tau"] >= vs_kd[n]["kendall_tau"] for n in baselines
            ),
            "diswot_tau_at_least_0.5": vs_kd["diswot"]["kendall_tau"] >= 0.5,
        },
        "partial": bool(args.partial),
        "command": "python benchmarks/proxy_correlation.py " + " ".join(sys.argv[1:]),
    }
    atomic_write_bytes(Path(args.out), (json.dumps(doc, indent=2) + "\n").encode())
    print(f"{'proxy':28s} {'tau(KD)':>8s} {'rho(KD)':>8s} {'tau 1-batch':>14s} {'tau(CE)':>8s}")
    for n in vs_kd:
        sb = vs_kd[n]["kendall_tau_single_batch"]
        print(
            f"{n:28s} {vs_kd[n]['kendall_tau']:8.3f} {vs_kd[n]['spearman_rho']:8.3f} "
            f"{sb['mean']:7.3f}±{sb['std']:.3f} {vs_ce[n]['kendall_tau']:8.3f}"
        )
    print(json.dumps(doc["goal"], indent=2))


if __name__ == "__main__":
    main()
