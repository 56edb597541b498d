"""The proxy study (issue #18): do the zero-cost proxies rank distilled students, on two spaces, above the noise?

    python benchmarks/proxy_study.py --phase time --threads 1            # time a small and a large candidate
    python benchmarks/proxy_study.py --phase train --threads 1 --chunk 6 # train at most 6 candidate-seeds, exit
    python benchmarks/proxy_study.py --phase report --threads 1          # score, correlate, write the JSON

Two spaces of 24 candidates each, sampled with a fixed seed: ResNet-like (blocks per stage in {1, 2, 3}^3,
widths (8, 16, 32) or (12, 24, 48)) and MobileNet-like (inverted residual blocks: depth, width, expand ratio
and kernel per stage; stem 8). Every candidate is distilled from the example teacher (ResNet-20 w32) with ONE
recipe: ``nas_common.RECIPE`` and its KD loss (CE 0.1 + KD 0.9, T=4) but ``EPOCHS`` epochs on the first
``--train`` Fashion-MNIST training images (6,000 by default: at 10,000 the MobileNet-like candidates take
90-220 s each on one thread, see ``--phase time``), best epoch by validation accuracy, at seeds 0 and 1 (the
initialisation and the batch order; the images are the same). Seed 1 gives the noise ceiling: Kendall tau
between the two seeds' test accuracies.

Each trained candidate-seed is one small JSON file under ``benchmarks/results/proxy_study/`` (committed, so a
new machine resumes), named by a hash of everything that changes its training (architecture, recipe, loss,
image count, data source, seed, teacher weights); a rerun skips what is there. The work order is seed 0 of both
spaces, ResNet and MobileNet interleaved, then seed 1; ``--chunk N`` stops after N trainings (exit 0 while
work remains, 100 when the study is complete), so a shell loop can commit after each chunk.

``--phase report`` scores every trained candidate with every proxy of ``proxies.PROXIES`` and the DisWOT
variants of proxy_correlation.py (semantic only, relation only, pooled), and DisWOT against the *trained* teacher
(its own weights, BN in eval mode; whole score, relation term, semantic term) on ``--batches`` real training batches
(scores cached beside the results), and writes ``benchmarks/results/proxy_study.json``: per space and pooled,
Kendall tau and Spearman rho against seed-0 test accuracy and against the two seeds' mean; the noise ceiling;
and, for each direction, the best single proxy and the best rank ensemble of two proxies picked on one space
by tau against *validation* accuracy (seed 0), with the test tau of every proxy on the other, untouched space.
The test split is used for nothing but the reported correlations. It works on a partial study (``partial``).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nas_common as nc
from proxy_correlation import probe_batches

from edgekd import __version__
from edgekd.core.artifacts import atomic_write_bytes
from edgekd.stages.search import proxies
from edgekd.stages.search.correlation import average_ranks, kendall_tau, spearman_rho
from edgekd.stages.search.space import MobileNetSpace, ResNetSpace

OUT = nc.ROOT / "benchmarks" / "results" / "proxy_study.json"
STORE = nc.ROOT / "benchmarks" / "results" / "proxy_study"
EPOCHS = 5
SEEDS = (0, 1)
MODE = "kd"
PER_SPACE = 24
SAMPLE_SEED = 18  # the number: fixes which candidates each space contributes
RESNET = ResNetSpace(blocks=[[1, 2, 3]] * 3, widths=[[8, 12], [16, 24], [32, 48]], kernel=[3])
MOBILENET = MobileNetSpace(
    type="mobilenet",
    depths=[[1, 2], [1, 2, 3], [1, 2, 3]],
    widths=[[8, 12], [16, 24], [24, 32, 48]],
    expand=[[1, 2], [2, 4], [3, 6]],
    kernel=[[3], [3, 5], [3, 5]],
    stem=8,
)
#: the DisWOT variants proxy_correlation.py reports beside the registered proxies
VARIANTS = (
    "diswot_semantic_only",
    "diswot_relation_only",
    "diswot_pooled",
    "diswot_trained_teacher",
    "diswot_trained_teacher_relation_only",
    "diswot_trained_teacher_semantic_only",
)
BASELINES = tuple(n for n in proxies.PROXIES if n != "diswot")


def spaces() -> dict[str, list[dict[str, Any]]]:
    """Each space's candidates as (arch, params): a fixed-seed sample of ``PER_SPACE``, in enumeration order."""
    resnet = [c for c in RESNET.enumerate() if c[4] == 2 * c[3] and c[5] == 2 * c[4]]  # two width settings
    out = {}
    for name, space, cands in (("resnet", RESNET, resnet), ("mobilenet", MOBILENET, MOBILENET.enumerate())):
        picked = sorted(random.Random(SAMPLE_SEED).sample(cands, PER_SPACE))
        out[name] = [
            {"space": name, "index": i, "arch": space.arch, "params": space.params(c, 1, 10)}
            for i, c in enumerate(picked)
        ]
    return out


def work_order(per_space: dict[str, list[dict[str, Any]]], seeds: Sequence[int]) -> list[tuple[dict, int]]:
    """Seed by seed; within a seed the spaces interleaved, so a partial study covers every space."""
    out = []
    for seed in seeds:
        for group in itertools.zip_longest(*per_space.values()):
            out += [(c, seed) for c in group if c is not None]
    return out


def _hash(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def teacher_digest() -> str:
    return hashlib.sha256(nc.TEACHER.read_bytes()).hexdigest()[:16]


def result_key(cand: dict[str, Any], seed: int, train: int, teacher: str) -> dict[str, Any]:
    """Everything that changes a training. The edgekd version is recorded in the file, not keyed: a version bump
    alone does not throw away hours of committed training."""
    return {
        "arch": cand["arch"],
        "params": cand["params"],
        "mode": MODE,
        "recipe": {**nc.RECIPE, "epochs": EPOCHS, "loss": nc.LOSSES[MODE]},
        "train": train,
        "data": "fashion-mnist",
        "seed": seed,
        "teacher_sha256": teacher,
    }


def result_path(store: Path, key: dict[str, Any]) -> Path:
    return store / f"{key['arch']}-s{key['seed']}-{_hash(key)}.json"


def stored(store: Path, cand: dict[str, Any], seed: int, train: int, teacher: str) -> dict[str, Any] | None:
    path = result_path(store, result_key(cand, seed, train, teacher))
    return json.loads(path.read_text()) if path.is_file() else None


def train_missing(
    order: Iterable[tuple[dict, int]],
    store: Path,
    train: int,
    teacher: str,
    trainer: Callable[[dict[str, Any], int], dict[str, Any]],
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> tuple[int, int]:
    """Train what the store lacks, in ``order``, at most ``limit`` of them; returns (trained now, still missing)."""
    done = 0
    missing = 0
    for cand, seed in order:
        key = result_key(cand, seed, train, teacher)
        path = result_path(store, key)
        if path.is_file():
            continue
        if limit is not None and done >= limit:
            missing += 1
            continue
        t0 = time.perf_counter()
        result = {**key, "space": cand["space"], "index": cand["index"], "version": __version__}
        result |= trainer(cand, seed)
        store.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(result, indent=1) + "\n").encode())
        done += 1
        log(
            f"[{cand['space']} {cand['index']:2d} seed {seed}] test {result['test_accuracy']:.2f} "
            f"val {result['val_accuracy']:.2f} macs {result['macs'] / 1e6:.2f}M ({time.perf_counter() - t0:.0f}s)"
        )
    return done, missing


# ---- correlations (pure: lists in, numbers out) ----------------------------------------------------------------


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(x) else x


def tau_rho(score: Sequence[float], acc: Sequence[float]) -> dict[str, Any]:
    if len(acc) < 3:
        return {"kendall_tau": None, "spearman_rho": None, "n": len(acc)}
    return {
        "kendall_tau": _finite(kendall_tau(score, acc)),
        "spearman_rho": _finite(spearman_rho(score, acc)),
        "n": len(acc),
    }


def rank_ensemble(*scores: Sequence[float]) -> list[float]:
    """Mean of the proxies' average ranks (higher = better, ties shared)."""
    return [float(v) for v in sum(average_ranks(s) for s in scores) / len(scores)]


def noise_ceiling(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Kendall tau and Spearman rho between seed 0's and seed 1's test accuracies, over the rows with both."""
    both = [r for r in rows if r.get("test1") is not None]
    out = tau_rho([r["test0"] for r in both], [r["test1"] for r in both])
    if len(both) >= 3:
        val = tau_rho([r["val0"] for r in both], [r["val1"] for r in both])
        out["val_kendall_tau"] = val["kendall_tau"]
        out["mean_abs_test_gap"] = statistics.mean(abs(r["test0"] - r["test1"]) for r in both)
    return out


def candidates_scores(rows: Sequence[dict[str, Any]], names: Iterable[str]) -> dict[str, list[float]]:
    return {n: [r["scores"][n] for r in rows] for n in names}


def pick(scores: dict[str, list[float]], val: Sequence[float]) -> dict[str, Any]:
    """The best single proxy and the best mean-of-ranks pair by Kendall tau against ``val`` (validation accuracy:
    this function never sees a test accuracy). Ties go to the first name in order; NaN tau counts as worst."""

    def tau(s: Sequence[float]) -> float:
        t = kendall_tau(s, val)
        return -math.inf if math.isnan(t) else t

    singles = {n: tau(s) for n, s in scores.items()}
    pairs = {(a, b): tau(rank_ensemble(scores[a], scores[b])) for a, b in itertools.combinations(scores, 2)}
    single = max(singles, key=lambda n: singles[n])
    pair = max(pairs, key=lambda p: pairs[p])
    return {
        "single": single,
        "single_val_tau": singles[single],
        "pair": list(pair),
        "pair_val_tau": pairs[pair],
        "chosen": "pair" if pairs[pair] > singles[single] else "single",
        "val_tau_of_every_single": singles,
    }


def transfer(tune: Sequence[dict[str, Any]], untouched: Sequence[dict[str, Any]], names: Sequence[str]) -> dict:
    """Pick on ``tune`` by seed-0 validation accuracy; report test tau there and on ``untouched`` for every proxy."""
    choice = pick(candidates_scores(tune, names), [r["val0"] for r in tune])
    test_u = [r["test0"] for r in untouched]
    scores_u = candidates_scores(untouched, names)
    every = {n: tau_rho(scores_u[n], test_u) for n in names}
    pair_u = tau_rho(rank_ensemble(*(scores_u[n] for n in choice["pair"])), test_u)
    pair_t = tau_rho(rank_ensemble(*(candidates_scores(tune, choice["pair"]).values())), [r["test0"] for r in tune])
    single_t = tau_rho(candidates_scores(tune, [choice["single"]])[choice["single"]], [r["test0"] for r in tune])
    chosen_u = pair_u if choice["chosen"] == "pair" else every[choice["single"]]
    taus_b = {n: every[n]["kendall_tau"] for n in BASELINES if n in every and every[n]["kendall_tau"] is not None}
    best_baseline = max(taus_b, key=lambda n: taus_b[n]) if taus_b else None

    def goal(tau: float | None) -> dict[str, Any]:
        return {
            "tau_untouched": tau,
            "at_least_best_baseline": None if tau is None or best_baseline is None else tau >= taus_b[best_baseline],
            "at_least_0.5": None if tau is None else tau >= 0.5,
        }

    return {
        "n_tune": len(tune),
        "n_untouched": len(untouched),
        "picked_by": "Kendall tau vs seed-0 validation accuracy on the tuning space (test accuracy not used)",
        **choice,
        "single_test_tau_tuning_space": single_t,
        "pair_test_tau_tuning_space": pair_t,
        "single_untouched": every[choice["single"]],
        "pair_untouched": pair_u,
        "every_proxy_untouched": every,
        "best_baseline_untouched": best_baseline,
        "best_baseline_tau_untouched": taus_b.get(best_baseline) if best_baseline else None,
        "goal": {
            "chosen": goal(chosen_u["kendall_tau"]),
            "single": goal(every[choice["single"]]["kendall_tau"]),
            "pair": goal(pair_u["kendall_tau"]),
            "diswot_as_shipped": goal(every["diswot"]["kendall_tau"]) if "diswot" in every else None,
        },
    }


def correlations(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Every proxy against seed-0 test accuracy, seed-0 validation accuracy, and the two seeds' mean test accuracy."""
    both = [r for r in rows if r.get("test1") is not None]
    s_all, s_both = candidates_scores(rows, names), candidates_scores(both, names)
    test0, val0 = [r["test0"] for r in rows], [r["val0"] for r in rows]
    mean = [(r["test0"] + r["test1"]) / 2 for r in both]
    return {
        n: {
            "vs_test_seed0": tau_rho(s_all[n], test0),
            "vs_val_seed0": tau_rho(s_all[n], val0),
            "vs_test_mean_of_seeds": tau_rho(s_both[n], mean),
        }
        for n in names
    }


# ---- scoring ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def trained_teacher_stats(teacher: torch.nn.Module, batch: proxies.ProbeBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The trained teacher's (g, A) on ``batch``: its own weights, BN in eval mode (its running statistics), the
    classifier gradient in closed form as for the random teacher. The issue's "teacher's trained weights" variant."""
    key = (id(teacher), -1)
    hit = batch.teacher_stats.get(key)
    if hit is not None:
        return hit[1], hit[2]
    g, a = proxies._fc_grad_and_features(teacher, batch, "teacher", train=False)
    batch.teacher_stats[key] = (None, g, a)
    return g, a


def score_candidate(
    cand: dict[str, Any], batches: Sequence[proxies.ProbeBatch], teacher: torch.nn.Module
) -> dict[str, list[float]]:
    """Every proxy of ``proxies.PROXIES`` and the DisWOT ``VARIANTS`` on each batch (batch b: seed b), as
    proxy_correlation.score_all does."""
    m = nc.build(cand["arch"], cand["params"], seed=0)
    out: dict[str, list[float]] = {}
    for b, batch in enumerate(batches):
        g_s, a_s = proxies.diswot_stats(m, batch, b)
        g_t, a_t = proxies.teacher_stats(teacher, batch, b)
        m_s, m_r = proxies.semantic_distance(g_s, g_t), proxies.relation_distance(a_s, a_t)
        out.setdefault("diswot_semantic_only", []).append(-m_s)
        out.setdefault("diswot_relation_only", []).append(-m_r)
        out.setdefault("diswot_pooled", []).append(-(proxies.semantic_distance(g_s, g_t, mismatch="pooled") + m_r))
        g_tt, a_tt = trained_teacher_stats(teacher, batch)
        tm_s, tm_r = proxies.semantic_distance(g_s, g_tt), proxies.relation_distance(a_s, a_tt)
        out.setdefault("diswot_trained_teacher", []).append(-(tm_s + tm_r))
        out.setdefault("diswot_trained_teacher_relation_only", []).append(-tm_r)
        out.setdefault("diswot_trained_teacher_semantic_only", []).append(-tm_s)
        for name in proxies.PROXIES:
            out.setdefault(name, []).append(proxies.score(name, m, batch, teacher, seed=b))
    return out


def scores_for(
    cands: Sequence[dict[str, Any]], args: argparse.Namespace, store: Path, teacher_sha: str
) -> dict[str, dict]:
    """Per candidate the proxies' per-batch scores, cached as one file per candidate beside the results."""
    data = teacher = batches = None
    out = {}
    for cand in cands:
        key = {
            "arch": cand["arch"],
            "params": cand["params"],
            "probe": [args.train, args.batches, args.batch_size, args.probe_seed],
            "proxies": sorted([*proxies.PROXIES, *VARIANTS]),
            "teacher_sha256": teacher_sha,
        }
        path = store / "scores" / f"{cand['arch']}-{_hash(key)}.json"
        if path.is_file():
            out[cand["space"] + str(cand["index"])] = json.loads(path.read_text())["scores"]
            continue
        if data is None:
            data, teacher = nc.load(args.train), nc.teacher()
            batches = probe_batches(data, args.batches, args.batch_size, args.probe_seed)
        t0 = time.perf_counter()
        per_batch = score_candidate(cand, batches, teacher)
        doc = {**key, "scores": per_batch, "seconds": round(time.perf_counter() - t0, 2), "version": __version__}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(doc) + "\n").encode())
        out[cand["space"] + str(cand["index"])] = per_batch
        print(f"scored {cand['space']} {cand['index']} ({doc['seconds']:.1f}s)", flush=True)
    return out


# ---- phases ----------------------------------------------------------------------------------------------------


def make_trainer(train: int) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    data = nc.load(train)
    t = nc.teacher()
    logits = nc.teacher_logits(t, data, nc.ROOT / "runs" / "bench-nas")
    return lambda cand, seed: nc.distill(cand["arch"], cand["params"], MODE, data, t, logits, seed, EPOCHS)


def phase_time(args: argparse.Namespace, store: Path) -> None:
    """One epoch of the recipe on the smallest and the largest (MACs) candidate of each space, plus the test
    evaluation: what one candidate-seed costs at ``--train`` images. Written to ``<store>/timing.json``."""
    from edgekd.models.count import count_macs

    data = nc.load(args.train)
    t = nc.teacher()
    logits = nc.teacher_logits(t, data, nc.ROOT / "runs" / "bench-nas")
    rows = []
    for name, cands in spaces().items():
        macs = [count_macs(nc.build(c["arch"], c["params"], 0), (1, 28, 28)) for c in cands]
        for cand in (cands[macs.index(min(macs))], cands[macs.index(max(macs))]):
            r = nc.distill(cand["arch"], cand["params"], MODE, data, t, logits, 0, epochs=1)
            m = nc.build(cand["arch"], cand["params"], 0)
            t0 = time.perf_counter()
            nc.accuracy(m, data.test)
            test_s = time.perf_counter() - t0
            epoch = r["epoch_seconds"][0]
            rows.append(
                {
                    "space": name,
                    "index": cand["index"],
                    "params": cand["params"],
                    "macs": r["macs"],
                    "epoch_seconds_train_and_val": epoch,
                    "test_eval_seconds": round(test_s, 2),
                    "predicted_seconds_per_candidate_seed": round(EPOCHS * epoch + test_s, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    doc = {"train_images": args.train, "threads": args.threads, "epochs": EPOCHS, "rows": rows, "date": time.ctime()}
    store.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(store / f"timing-{args.train}.json", (json.dumps(doc, indent=1) + "\n").encode())


def gather(store: Path, train: int, teacher_sha: str) -> dict[str, list[dict[str, Any]]]:
    """Per space, the candidates trained at seed 0 (with seed 1's result where it exists)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, cands in spaces().items():
        out[name] = []
        for c in cands:
            r0, r1 = (stored(store, c, s, train, teacher_sha) for s in SEEDS)
            if r0 is None:
                continue
            out[name].append(
                {
                    "cand": c,
                    "test0": r0["test_accuracy"],
                    "val0": r0["val_accuracy"],
                    "test1": r1["test_accuracy"] if r1 else None,
                    "val1": r1["val_accuracy"] if r1 else None,
                    "macs": r0["macs"],
                    "n_params": r0["n_params"],
                    "seconds": [r0["seconds"], *([r1["seconds"]] if r1 else [])],
                }
            )
    return out


def phase_report(args: argparse.Namespace, store: Path) -> dict[str, Any]:
    teacher_sha = teacher_digest()
    per_space = gather(store, args.train, teacher_sha)
    every = [r for rows in per_space.values() for r in rows]
    per_batch = scores_for([r["cand"] for r in every], args, store, teacher_sha)
    names = [*proxies.PROXIES, *VARIANTS]
    for r in every:
        pb = per_batch[r["cand"]["space"] + str(r["cand"]["index"])]
        r["scores"] = {n: statistics.mean(pb[n]) for n in names}
    total = {name: len(c) for name, c in spaces().items()}
    trained = {
        name: {
            "seed0": len(rows),
            "seed1": sum(r["test1"] is not None for r in rows),
            "of": total[name],
        }
        for name, rows in per_space.items()
    }
    partial = any(t["seed0"] < t["of"] or t["seed1"] < t["of"] for t in trained.values())
    seconds = {name: [s for r in rows for s in r["seconds"]] for name, rows in per_space.items()}
    doc: dict[str, Any] = {
        "issue": 18,
        "partial": partial,
        "trained": trained,
        "spaces": {
            "resnet": {"space": RESNET.model_dump(), "widths": "(8, 16, 32) or (12, 24, 48)", "size": total["resnet"]},
            "mobilenet": {"space": MOBILENET.model_dump(), "size": total["mobilenet"]},
            "sampling": f"random.Random({SAMPLE_SEED}).sample of {PER_SPACE} per space, enumeration order",
        },
        "recipe": {
            **nc.RECIPE,
            "epochs": EPOCHS,
            "loss": nc.LOSSES[MODE],
            "train_images": args.train,
            "seeds": list(SEEDS),
            "seed_means": "initialisation and batch order; the same training images for both seeds",
            "teacher": "examples/fashion-mnist/teacher.pt (ResNet-20 w32)",
            "teacher_sha256": teacher_sha,
            "test": "full Fashion-MNIST test split (10,000), used only for the reported correlations",
            "validation": "the 6,000-image validation split: best epoch, and the tuning-space selection",
        },
        "probe": {
            "batches": args.batches,
            "batch_size": args.batch_size,
            "probe_seed": args.probe_seed,
            "seeds": "batch b uses initialisation seed b (candidate) and b + 2^20 (teacher); scores averaged",
        },
        "training_seconds": {
            name: {
                "n": len(s),
                "median": statistics.median(s) if s else None,
                "min": min(s, default=None),
                "max": max(s, default=None),
                "total": round(sum(s), 1),
            }
            for name, s in seconds.items()
        },
        "noise_ceiling": {name: noise_ceiling(rows) for name, rows in per_space.items()}
        | {"pooled": noise_ceiling(every)},
        "correlations": {name: correlations(rows, names) for name, rows in per_space.items() if len(rows) >= 3}
        | ({"pooled": correlations(every, names)} if len(every) >= 3 else {}),
        "transfer": {},
        "candidates": [
            {
                "space": r["cand"]["space"],
                "index": r["cand"]["index"],
                "params": r["cand"]["params"],
                "n_params": r["n_params"],
                "macs": r["macs"],
                "test_seed0": r["test0"],
                "val_seed0": r["val0"],
                "test_seed1": r["test1"],
                "val_seed1": r["val1"],
                "training_seconds": r["seconds"],
                "scores": r["scores"],
            }
            for r in every
        ],
        "command": "python benchmarks/proxy_study.py " + " ".join(sys.argv[1:]),
    }
    for tune, untouched in (("resnet", "mobilenet"), ("mobilenet", "resnet")):
        if len(per_space[tune]) >= 3 and len(per_space[untouched]) >= 3:
            doc["transfer"][f"tuned_on_{tune}_evaluated_on_{untouched}"] = transfer(
                per_space[tune], per_space[untouched], names
            )
    timing = store / f"timing-{args.train}.json"
    if timing.is_file():
        doc["timing_probe"] = json.loads(timing.read_text())
    atomic_write_bytes(Path(args.out), (json.dumps(doc, indent=1) + "\n").encode())
    summary(doc, names)
    return doc


def _f(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.3f}"


def summary(doc: dict[str, Any], names: Sequence[str]) -> None:
    print(f"trained: {json.dumps(doc['trained'])}  partial: {doc['partial']}")
    print(
        "noise ceiling (tau seed0 vs seed1 test):",
        {k: (_f(v["kendall_tau"]), v["n"]) for k, v in doc["noise_ceiling"].items()},
    )
    cols = list(doc["correlations"])
    print(f"{'proxy':24s} " + " ".join(f"{c:>10s}" for c in cols) + "   (Kendall tau vs seed-0 test accuracy)")
    for n in names:
        print(
            f"{n:24s} " + " ".join(f"    {_f(doc['correlations'][c][n]['vs_test_seed0']['kendall_tau'])}" for c in cols)
        )
    for k, t in doc["transfer"].items():
        print(
            f"{k}: single {t['single']} (val tau {t['single_val_tau']:.3f}) -> untouched "
            f"{_f(t['single_untouched']['kendall_tau'])}; pair {'+'.join(t['pair'])} (val tau {t['pair_val_tau']:.3f})"
            f" -> untouched {_f(t['pair_untouched']['kendall_tau'])}; best baseline {t['best_baseline_untouched']} "
            f"{_f(t['best_baseline_tau_untouched'])}; goal {json.dumps(t['goal']['chosen'])}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=["time", "train", "report"], default="train")
    ap.add_argument("--train", type=int, default=6000, help="training images (the first of the shuffled split)")
    ap.add_argument("--chunk", type=int, help="train at most this many candidate-seeds, then exit")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared 2-core host)")
    ap.add_argument("--batches", type=int, default=5, help="probe batches per proxy score")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--probe-seed", type=int, default=0)
    ap.add_argument("--store", default=str(STORE))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    store = Path(args.store)
    if args.phase == "time":
        phase_time(args, store)
        return 0
    if args.phase == "report":
        phase_report(args, store)
        return 0
    teacher_sha = teacher_digest()
    trainer = make_trainer(args.train)
    done, missing = train_missing(
        work_order(spaces(), SEEDS),
        store,
        args.train,
        teacher_sha,
        trainer,
        args.chunk,
        lambda s: print(s, flush=True),
    )
    print(f"trained {done} now, {missing} still missing", flush=True)
    return 0 if missing else 100


if __name__ == "__main__":
    sys.exit(main())
