"""The proxy study's pure logic (benchmarks/proxy_study.py) on tiny fake inputs: no training, no data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import proxy_study as ps

NAMES = ["diswot", "params", "snip", "zen"]


def fake_cand(space: str, i: int) -> dict:
    return {"space": space, "index": i, "arch": space, "params": {"blocks": [1, 1, i + 1], "widths": [8, 16, 32]}}


def fake_rows(space: str, val: list[float], test: list[float], scores: dict[str, list[float]]) -> list[dict]:
    return [
        {
            "cand": fake_cand(space, i),
            "val0": v,
            "test0": t,
            "test1": None,
            "val1": None,
            "scores": {n: s[i] for n, s in scores.items()},
        }
        for i, (v, t) in enumerate(zip(val, test, strict=True))
    ]


def test_rank_ensemble_is_the_mean_of_average_ranks() -> None:
    assert ps.rank_ensemble([10.0, 20.0, 30.0], [3.0, 1.0, 2.0]) == [2.0, 1.5, 2.5]
    assert ps.rank_ensemble([1.0, 1.0, 5.0]) == [1.5, 1.5, 3.0]  # ties share their rank
    assert ps.rank_ensemble([float("-inf"), 0.0, 1.0], [1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]


def test_pick_finds_the_best_single_and_pair_by_validation() -> None:
    val = [1.0, 2.0, 3.0, 4.0, 5.0]
    scores = {
        "diswot": [5.0, 4.0, 3.0, 2.0, 1.0],  # reversed
        "params": [1.0, 2.0, 3.0, 5.0, 4.0],  # one swap
        "snip": [2.0, 1.0, 3.0, 4.0, 5.0],  # one swap elsewhere
        "zen": [1.0, 1.0, 1.0, 1.0, 1.0],  # constant: tau is NaN, counts as worst
    }
    choice = ps.pick(scores, val)
    assert choice["single"] == "params"  # ties with snip, the first in order wins
    assert choice["single_val_tau"] == pytest.approx(0.8)
    assert choice["val_tau_of_every_single"]["zen"] == float("-inf")
    assert choice["pair"] == ["params", "snip"]  # their rank mean orders 1 < 2 ... with two half-ties
    assert choice["chosen"] == ("pair" if choice["pair_val_tau"] > choice["single_val_tau"] else "single")


def test_the_tuning_space_choice_never_looks_at_test_accuracy() -> None:
    val = [1.0, 2.0, 3.0, 4.0, 5.0]
    scores = {
        "diswot": [1.0, 2.0, 3.0, 4.0, 5.0],  # perfect on validation
        "params": [5.0, 4.0, 3.0, 2.0, 1.0],  # perfect on the test accuracies below
        "snip": [2.0, 1.0, 3.0, 5.0, 4.0],
        "zen": [3.0, 1.0, 2.0, 5.0, 4.0],
    }
    untouched = fake_rows("mobilenet", [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], {n: [1, 2, 4, 3] for n in NAMES})
    picked = []
    for test in ([1.0, 2.0, 3.0, 4.0, 5.0], [5.0, 4.0, 3.0, 2.0, 1.0]):
        out = ps.transfer(fake_rows("resnet", val, test, scores), untouched, NAMES)
        picked.append((out["single"], out["pair"], out["chosen"], out["single_val_tau"]))
    assert picked[0] == picked[1]
    assert picked[0][0] == "diswot"
    # test accuracy enters only the reported correlations: reversed test order, reversed tau
    assert out["single_test_tau_tuning_space"]["kendall_tau"] == pytest.approx(-1.0)


def test_transfer_goal_compares_with_the_best_baseline_on_the_untouched_space() -> None:
    tune = fake_rows("resnet", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], {n: [1, 2, 3] for n in NAMES})
    test_u = [1.0, 2.0, 3.0, 4.0]
    scores_u = {"diswot": [1, 2, 4, 3], "params": [1, 2, 3, 4], "snip": [4, 3, 2, 1], "zen": [2, 1, 3, 4]}
    out = ps.transfer(tune, fake_rows("mobilenet", test_u, test_u, scores_u), NAMES)
    assert out["single"] == "diswot"  # every proxy ties on the tuning space: the first name wins
    assert out["best_baseline_untouched"] == "params"
    assert out["goal"]["single"] == {"tau_untouched": pytest.approx(2 / 3), "at_least_best_baseline": False,
                                     "at_least_0.5": True}  # fmt: skip


def test_noise_ceiling_uses_the_candidates_with_both_seeds() -> None:
    rows = [
        {"test0": 80.0, "test1": 81.0, "val0": 80.0, "val1": 80.5},
        {"test0": 82.0, "test1": 83.0, "val0": 82.0, "val1": 82.5},
        {"test0": 84.0, "test1": 82.0, "val0": 84.0, "val1": 84.5},
        {"test0": 90.0, "test1": None, "val0": 90.0, "val1": None},
    ]
    out = ps.noise_ceiling(rows)
    assert out["n"] == 3
    assert out["kendall_tau"] == pytest.approx(1 / 3)
    assert out["val_kendall_tau"] == pytest.approx(1.0)
    assert out["mean_abs_test_gap"] == pytest.approx(4 / 3)
    assert ps.noise_ceiling(rows[:2])["kendall_tau"] is None  # too few to rank


def test_a_stored_result_is_not_trained_again(tmp_path: Path) -> None:
    order = [(fake_cand("resnet", 0), 0), (fake_cand("mobilenet", 0), 0), (fake_cand("resnet", 0), 1)]
    calls: list[tuple[int, int]] = []

    def trainer(cand: dict, seed: int) -> dict:
        calls.append((cand["index"], seed))
        return {"test_accuracy": 80.0, "val_accuracy": 81.0, "macs": 1e6, "seconds": 1.0}

    assert ps.train_missing(order, tmp_path, 100, "t", trainer, limit=2, log=lambda _s: None) == (2, 1)
    assert len(calls) == 2
    assert ps.stored(tmp_path, order[0][0], 0, 100, "t")["test_accuracy"] == 80.0

    def refuse(cand: dict, seed: int) -> dict:
        raise AssertionError(f"retrained {cand['space']} {cand['index']} seed {seed}")

    assert ps.train_missing(order[:2], tmp_path, 100, "t", refuse, log=lambda _s: None) == (0, 0)
    assert ps.train_missing(order, tmp_path, 100, "t", trainer, log=lambda _s: None) == (1, 0)  # only the missing one
    assert calls[-1] == (0, 1)
    # a different image count or teacher is a different training
    assert ps.stored(tmp_path, order[0][0], 0, 200, "t") is None
    assert ps.stored(tmp_path, order[0][0], 0, 100, "other") is None


def test_work_order_is_seed_major_and_interleaves_the_spaces() -> None:
    per_space = {"resnet": [fake_cand("resnet", i) for i in range(3)], "mobilenet": [fake_cand("mobilenet", 0)]}
    got = [(c["space"][0], c["index"], s) for c, s in ps.work_order(per_space, (0, 1))]
    assert got == [
        ("r", 0, 0),
        ("m", 0, 0),
        ("r", 1, 0),
        ("r", 2, 0),
        ("r", 0, 1),
        ("m", 0, 1),
        ("r", 1, 1),
        ("r", 2, 1),
    ]


def test_the_study_has_two_spaces_of_24_candidates() -> None:
    per_space = ps.spaces()
    assert {k: len(v) for k, v in per_space.items()} == {"resnet": 24, "mobilenet": 24}
    assert per_space == ps.spaces()  # deterministic
    assert {c["arch"] for c in per_space["mobilenet"]} == {"mobilenet"}


def test_trained_teacher_stats_use_the_trained_weights_in_eval_mode_and_leave_the_teacher_unchanged() -> None:
    import torch

    from edgekd.models import zoo
    from edgekd.stages.search import proxies

    torch.manual_seed(0)
    teacher = zoo.build("resnet", {"blocks": [1, 1, 1], "widths": [8, 16, 32], "in_channels": 1, "num_classes": 10})
    with torch.no_grad():
        teacher.train()
        teacher(torch.randn(32, 1, 28, 28))  # running statistics that differ from any batch's own
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    batch = proxies.ProbeBatch(x, y, 10)
    g, a = ps.trained_teacher_stats(teacher, batch)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    teacher.eval()
    teacher.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(teacher(x), y).backward()
    assert torch.allclose(g, teacher.fc.weight.grad, atol=1e-6)  # the closed form, on the eval-mode forward
    assert a.shape[0] == 16 and ps.trained_teacher_stats(teacher, batch)[0] is g  # computed once per batch
