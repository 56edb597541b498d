"""Aging (regularized) evolution (Real et al. 2019) with a hard budget on every candidate.

Every sampled, mutated or crossed candidate is checked against the budget before it is scored;
one that breaks it is rejected and another is drawn, so no candidate over budget ever enters the
population or the history.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgekd.core.errors import PipelineError
from edgekd.stages.search.space import Candidate, Space


@dataclass
class Evaluated:
    cand: Candidate
    params: dict[str, Any]
    score: float
    score_std: float
    n_params: int
    macs: int
    latency_ms: float | None
    step: int = 0
    origin: str = "sample"
    extra: dict[str, Any] = field(default_factory=dict)


Evaluate = Callable[[Candidate], "Evaluated | None"]  # None: over budget


def _draw(make: Callable[[], Candidate], evaluate: Evaluate, tries: int, what: str) -> Evaluated:
    for _ in range(tries):
        result = evaluate(make())
        if result is not None:
            return result
    raise PipelineError(
        f"search: no {what} candidate within the budget after {tries} tries",
        fix="loosen search.budget or widen the search space towards smaller models",
    )


def aging_evolution(
    space: Space,
    evaluate: Evaluate,
    population: int,
    sample: int,
    iterations: int,
    rng: random.Random,
    crossover: float = 0.0,
    tries: int = 200,
    on_step: Callable[[int, Evaluated], None] | None = None,
) -> list[Evaluated]:
    """Return every evaluated in-budget candidate, in the order they were created."""
    history: list[Evaluated] = []
    pop: deque[Evaluated] = deque()
    for i in range(population):
        e = _draw(lambda: space.sample(rng), evaluate, tries, "sampled")
        e.step, e.origin = i, "sample"
        pop.append(e)
        history.append(e)
        if on_step:
            on_step(len(history), e)
    for it in range(iterations):

        def child() -> Candidate:
            parent = max(rng.sample(list(pop), min(sample, len(pop))), key=lambda m: m.score)
            if crossover and rng.random() < crossover:
                other = max(rng.sample(list(pop), min(sample, len(pop))), key=lambda m: m.score)
                return space.mutate(space.crossover(parent.cand, other.cand, rng), rng)
            return space.mutate(parent.cand, rng)

        e = _draw(child, evaluate, tries, "mutated")
        e.step, e.origin = population + it, "child"
        pop.append(e)
        pop.popleft()  # the oldest dies, whatever its score
        history.append(e)
        if on_step:
            on_step(len(history), e)
    return history


def pareto(history: list[Evaluated]) -> list[Evaluated]:
    """Candidates no other beats on both score (higher) and cost (latency, else MACs; lower)."""

    def cost(e: Evaluated) -> float:
        return e.latency_ms if e.latency_ms is not None else float(e.macs)

    unique = {e.cand: e for e in history}.values()
    front = [
        e
        for e in unique
        if not any(
            (o.score >= e.score and cost(o) <= cost(e)) and (o.score > e.score or cost(o) < cost(e)) for o in unique
        )
    ]
    return sorted(front, key=cost)
