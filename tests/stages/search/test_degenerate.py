"""Proxies, correlation and search on degenerate candidates: dead networks score worst, infinities rank and never
crash, NASWOT reads any activation module, and a seed (not what ran before) fixes a candidate's weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.core.errors import ConfigError, ModelError
from edgekd.data.sources import FASHION_MNIST_SUBSET
from edgekd.models import zoo
from edgekd.stages.search.correlation import kendall_tau, spearman_rho
from edgekd.stages.search.proxies import ProbeBatch, build_seeded, score
from edgekd.stages.search.stage import aggregate


@pytest.fixture(scope="module")
def batch() -> ProbeBatch:
    with np.load(FASHION_MNIST_SUBSET) as f:
        x = torch.from_numpy(f["x_train"][:32]).float() / 255
        y = torch.from_numpy(f["y_train"][:32].astype(np.int64))
    return ProbeBatch((x - 0.286) / 0.353, y, 10)


def _net(width: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return zoo.build("resnet", {"depth": 8, "width": width, "in_channels": 1})


class Dead(nn.Module):
    """A candidate whose features are zero for every input (a zero op before the pooling)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x) * 0.0).flatten(1))


def test_a_dead_network_scores_worst_with_diswot(batch: ProbeBatch) -> None:
    """Before: the zero features normalised to zero gave M_s = 1, M_r = 1/N: about -1.03, above live random
    networks (~ -1.4), so dead candidates ranked in the top fifth."""
    teacher = _net(16)
    live = [score("diswot", _net(w), batch, teacher) for w in (4, 8)]
    assert all(math.isfinite(v) for v in live)
    assert score("diswot", Dead(), batch, teacher) == float("-inf") < min(live)


class ZeroBranch(nn.Module):
    """A BatchNorm fed by a zero op (as cells of NAS benchmarks have): its batch variance is 0."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.zero_bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(self.pool(h + self.zero_bn(h * 0.0)).flatten(1))


def test_zen_leaves_zero_variance_batch_norms_out(batch: ProbeBatch) -> None:
    assert math.isfinite(score("zen", ZeroBranch(), batch))  # before: -inf for any such network


def test_rank_correlations_rank_infinities_and_refuse_nan() -> None:
    ground = [1.0, 2.0, 3.0, 4.0]
    # before: -inf - -inf is NaN, and the tau was NaN
    assert kendall_tau([float("-inf"), float("-inf"), 0.5, 2.0], ground) == pytest.approx(5 / math.sqrt(5 * 6))
    assert kendall_tau([float("-inf"), 0.0, 1.0, float("inf")], ground) == 1.0
    assert spearman_rho([float("-inf"), 0.0, 1.0, float("inf")], ground) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="NaN is not a rank"):
        kendall_tau([float("nan"), 0.0, 1.0, 2.0], ground)


def test_a_candidate_with_an_infinite_batch_score_is_ranked_last_not_a_crash() -> None:
    assert aggregate([-1.0, -2.0]) == (-1.5, 0.5)
    assert aggregate([-1.0, float("-inf")]) == (float("-inf"), 0.0)  # before: statistics.pstdev raised
    assert aggregate([float("nan"), 1.0])[0] == float("-inf")


def test_naswot_reads_gelu_and_says_when_there_is_no_activation_module(batch: ProbeBatch) -> None:
    gelu = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    assert math.isfinite(score("naswot", gelu, batch))  # before: torch.cat([]) on a model without nn.ReLU

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    with pytest.raises(ModelError, match="naswot: Functional calls no activation module"):
        score("naswot", Functional(), batch)


def test_a_seed_fixes_a_candidates_weights_whatever_ran_before(batch: ProbeBatch) -> None:
    def make() -> nn.Module:
        return zoo.build("resnet", {"depth": 8, "width": 4, "in_channels": 1})

    torch.manual_seed(123)
    first = build_seeded(make, 7)
    torch.randn(1000)  # other work in between moves the global generator
    second = build_seeded(make, 7)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert score("snip", first, batch) == score("snip", second, batch)
    state = torch.get_rng_state()
    score("synflow", first, batch, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # scoring leaves the caller's random state alone


def test_users_score_their_own_candidates_through_the_public_api(batch: ProbeBatch) -> None:
    import edgekd

    def plain() -> nn.Module:  # a user's own nn.Sequential CNN, built by a function
        return nn.Sequential(
            nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
        )

    teacher = _net(16)
    cands = [plain, lambda: _net(8), Dead()]
    scores = edgekd.score(cands, teacher, (batch.x, batch.y), proxy="diswot", seeds=2)
    assert len(scores) == 3 and all(math.isfinite(s) for s in scores[:2]) and scores[2] == float("-inf")
    assert edgekd.score(cands, teacher, [(batch.x, batch.y)], proxy="diswot", seeds=2) == scores  # deterministic
    snip = edgekd.score([plain, plain], teacher, (batch.x, batch.y), proxy="snip")
    assert snip[0] == snip[1]  # a builder's weights depend on the seed only
    with pytest.raises(edgekd.EdgekdError, match="proxy 'diswott' is not one of"):
        edgekd.score(cands, teacher, (batch.x, batch.y), proxy="diswott")


@pytest.mark.parametrize("head", ["dropout", "mlp", "flatten"])
def test_the_closed_form_classifier_gradient_holds_for_any_head(batch: ProbeBatch, head: str) -> None:
    """DisWOT's dCE/dW of the classifier, computed from one forward pass, equals autograd's for heads other than
    pool -> fc: dropout before the classifier, an MLP head, a flatten of the whole map (no pooling)."""
    from edgekd.stages.search.proxies import _fc_grad_and_features, fc_grad_autograd

    torch.manual_seed(0)
    body = [nn.Conv2d(1, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU()]
    heads = {
        "dropout": [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.0), nn.Linear(4, 10)],
        "mlp": [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 10)],
        "flatten": [nn.Flatten(), nn.Linear(4 * 13 * 13, 10)],
    }
    model = nn.Sequential(*body, *heads[head])
    closed, features = _fc_grad_and_features(model, batch)
    torch.testing.assert_close(closed, fc_grad_autograd(model, batch), rtol=1e-4, atol=1e-6)
    assert features.shape[0] == len(batch.y)


def test_search_ranks_a_users_own_candidates_under_a_budget(batch: ProbeBatch) -> None:
    import edgekd

    teacher = _net(16)
    cands = [lambda: _net(4), lambda: _net(8), Dead(), lambda: _net(16)]
    r = edgekd.search(cands, teacher=teacher, batches=(batch.x, batch.y), budget={"params": 60_000}, proxy="diswot")
    assert [row["index"] for row in r.ranked][-1] == 2  # the dead network ranks last
    assert r.chosen is not None and r.chosen["params"] <= 60_000 and r.chosen["index"] != 2
    assert all(row["within_budget"] == (row["params"] <= 60_000) for row in r.ranked)
    assert r.cost == "macs" and r.pareto and all(p in r.ranked for p in r.pareto)
    timed = edgekd.search(cands[:2], teacher=teacher, batches=(batch.x, batch.y), budget={"latency_ms": 100.0})
    assert timed.cost == "latency_ms" and all(row["latency_ms"] > 0 for row in timed.ranked)
    with pytest.raises(edgekd.EdgekdError, match="needs teacher= and batches="):
        edgekd.search(cands)


def test_search_over_candidates_takes_several_budgets_at_once(batch: ProbeBatch, monkeypatch) -> None:
    """A list of budgets (AutoDistil) ranks once and picks the best within each; each candidate is timed once."""
    import edgekd
    from edgekd.latency import search_latency

    timed: list[int] = []
    real = search_latency.measured_latency_ms

    def counting(model: nn.Module, *args: object) -> float:
        timed.append(id(model))
        return real(model, *args)

    monkeypatch.setattr(search_latency, "measured_latency_ms", counting)
    teacher = _net(16)
    cands = [_net(4), _net(8), _net(16)]
    macs = [edgekd.search([c], teacher=teacher, batches=(batch.x, batch.y)).ranked[0]["macs"] for c in cands]
    r = edgekd.search(
        cands, teacher=teacher, batches=(batch.x, batch.y), budget={"macs": [macs[0], macs[2]], "latency_ms": 1e3}
    )
    assert r.per_budget is not None and [b["budget"]["macs"] for b in r.per_budget] == [macs[0], macs[2]]
    assert r.per_budget[0]["chosen"]["index"] == 0  # only the smallest fits the first budget
    best_overall = max(r.ranked, key=lambda row: row["score"])
    assert r.per_budget[1]["chosen"] == best_overall and r.chosen == r.per_budget[0]["chosen"]
    assert all(row["within_budget"] == (row["macs"] <= macs[0]) for row in r.ranked)  # the first budget's
    # one measurement per candidate, not per budget; then each budget's choice is measured twice more (confirm=2)
    chosen = {id(cands[b["chosen"]["index"]]) for b in r.per_budget}
    assert sorted(timed) == sorted([id(c) for c in cands] + [i for i in chosen for _ in range(2)])
    assert r.confirmed is not None and all(m["within"] and len(m["readings_ms"]) == 3 for m in r.confirmed)
    single = edgekd.search(cands, teacher=teacher, batches=(batch.x, batch.y), budget={"macs": macs[2]})
    assert single.per_budget is None
    for bad, message in [
        ({"paramz": 1}, r"budget\.paramz: unknown key 'paramz' \(did you mean 'params'\?\)"),
        ({"macs": [1.0], "latency_ms": [1.0]}, "several budgets for one of macs or latency_ms, not both"),
        ({"latency_ms": []}, "latency_ms: give at least one budget"),
    ]:
        with pytest.raises(ConfigError, match=message):
            edgekd.search(cands, teacher=teacher, batches=(batch.x, batch.y), budget=bad)


def test_search_over_candidates_measures_the_choice_again(batch: ProbeBatch, monkeypatch) -> None:
    """A candidate within the latency budget on its one reading but over it when measured again is not chosen."""
    import edgekd
    from edgekd.latency import search_latency

    readings: dict[int, list[float]] = {}
    teacher = _net(16)
    cands = [_net(4), _net(8), _net(16)]

    def fake(model: nn.Module, *args: object) -> float:
        seen = readings.setdefault(id(model), [])
        seen.append(1.0 if not seen or model is not cands[2] else 9.0)  # the widest: a lucky first reading
        return seen[-1]

    monkeypatch.setattr(search_latency, "measured_latency_ms", fake)
    kw = {"teacher": teacher, "batches": (batch.x, batch.y), "proxy": "params", "budget": {"latency_ms": 5.0}}
    r = edgekd.search(cands, **kw)
    assert [m["readings_ms"] for m in r.confirmed] == [[1.0, 9.0, 9.0], [1.0, 1.0, 1.0]]
    assert r.chosen is not None and r.chosen["index"] == 1  # the next largest
    assert [row["within_budget"] for row in sorted(r.ranked, key=lambda row: row["index"])] == [True, True, False]
    readings.clear()
    trusting = edgekd.search(cands, **kw, confirm=0)
    assert trusting.chosen is not None and trusting.chosen["index"] == 2 and trusting.confirmed is None
    with pytest.raises(ConfigError, match="confirm must be >= 0"):
        edgekd.search(cands, **kw, confirm=-1)
