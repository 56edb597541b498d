"""Aging evolution: the budget holds for every candidate, runs are reproducible, the Pareto front is right."""

from __future__ import annotations

import random

import pytest

from edgekd.core.errors import PipelineError
from edgekd.stages.search.evolution import Evaluated, aging_evolution, pareto
from edgekd.stages.search.space import ResNetSpace

SPACE = ResNetSpace(blocks=[[1, 2, 3]] * 3, widths=[[8, 16, 24]] * 3, kernel=[3, 5])


def cost(c: tuple[int, ...]) -> int:
    return sum(c[:3]) * sum(c[3:6]) * c[6]  # a stand-in for MACs


def make_eval(limit: int, seen: list[tuple[int, ...]]):
    def evaluate(c: tuple[int, ...]) -> Evaluated | None:
        seen.append(c)
        if cost(c) > limit:
            return None
        return Evaluated(c, {}, score=float(sum(c)), score_std=0.0, n_params=cost(c), macs=cost(c), latency_ms=None)

    return evaluate


def test_budget_holds_for_every_sampled_mutated_and_crossed_candidate() -> None:
    seen: list[tuple[int, ...]] = []
    hist = aging_evolution(
        SPACE, make_eval(600, seen), population=8, sample=3, iterations=60, rng=random.Random(0), crossover=0.5
    )
    assert len(hist) == 68 and all(cost(e.cand) <= 600 for e in hist)
    assert any(cost(c) > 600 for c in seen), "the budget really rejected candidates"
    assert {e.origin for e in hist} == {"sample", "child"}


def test_evolution_improves_and_is_reproducible() -> None:
    runs = [aging_evolution(SPACE, make_eval(10**9, []), 8, 3, 80, random.Random(7)) for _ in range(2)]
    assert [e.cand for e in runs[0]] == [e.cand for e in runs[1]]
    first, last = runs[0][:8], runs[0][-8:]
    assert max(e.score for e in last) >= max(e.score for e in first)
    assert max(e.score for e in runs[0]) == float(3 * 3 + 3 * 24 + 5)  # the best genes are found


def test_impossible_budget_is_a_clear_error() -> None:
    with pytest.raises(PipelineError, match="no sampled candidate within the budget"):
        aging_evolution(SPACE, make_eval(0, []), 4, 2, 2, random.Random(0), tries=20)


def test_pareto_front() -> None:
    def e(score: float, lat: float) -> Evaluated:
        return Evaluated((int(score * 10), int(lat * 10)), {}, score, 0.0, 0, 0, lat)

    front = pareto([e(1, 1), e(2, 2), e(1.5, 3), e(3, 3), e(0.5, 0.5)])
    assert [(x.score, x.latency_ms) for x in front] == [(0.5, 0.5), (1, 1), (2, 2), (3, 3)]


def test_space_validation() -> None:
    with pytest.raises(ValueError, match="kernel sizes must be odd"):
        ResNetSpace(kernel=[4])
    with pytest.raises(ValueError, match="same number of stages"):
        ResNetSpace(blocks=[[1]], widths=[[8], [16]])
    assert SPACE.size() == 3**6 * 2 and len(SPACE.enumerate()) == SPACE.size()
