"""The winner's curse of a measured latency budget, and its guard.

Each candidate is timed once while the search runs. A candidate whose true latency is just over the budget passes
whenever one reading comes out low, and the search prefers exactly those (under a latency budget the better scores
sit at the edge of it), so a single reading lets through a choice that misses the budget on the device. Before a
choice under a *measured* latency budget is accepted, it is measured ``times`` more; it is kept when the median of
every reading is within the budget, else the next best candidate is tried. Predicted latencies are deterministic
and are not measured again.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Check:
    """One candidate measured again: every reading (the search's first), their median, and the verdict."""

    label: str
    budget_ms: float
    readings: list[float]
    within: bool

    @property
    def median(self) -> float:
        return statistics.median(self.readings)

    def record(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "budget_ms": self.budget_ms,
            "readings_ms": [round(r, 5) for r in self.readings],
            "median_ms": round(self.median, 5),
            "within": self.within,
        }


def confirm_choice(
    ranked: Sequence[T],
    budget_ms: float,
    times: int,
    key: Callable[[T], Hashable],
    first: Callable[[T], float],
    again: Callable[[T], float],
    label: Callable[[T], str],
    readings: dict[Hashable, list[float]] | None = None,
) -> tuple[T | None, list[Check]]:
    """The first of ``ranked`` (best first, each within ``budget_ms`` by its ``first`` reading) whose median over
    ``1 + times`` readings stays within ``budget_ms``, and the checks made; None when none does. ``readings`` caches
    a candidate's readings across calls (several budgets share them)."""
    cache: dict[Hashable, list[float]] = {} if readings is None else readings
    checks: list[Check] = []
    for cand in ranked:
        runs = cache.setdefault(key(cand), [first(cand)])
        while len(runs) < 1 + times:
            runs.append(again(cand))
        check = Check(label(cand), budget_ms, list(runs), statistics.median(runs) <= budget_ms)
        checks.append(check)
        if check.within:
            return cand, checks
    return None, checks
