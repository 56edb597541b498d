"""Rank correlations for judging proxies (numpy only): Kendall tau-b and Spearman rho, ties handled.

Scores may be ``-inf`` or ``inf`` (a proxy's worst or best, e.g. DisWOT on a dead network): they rank below or
above every finite score, and equal infinities tie. NaN is not a rank: it is refused."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _pair(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"need two equally long 1-D sequences of >= 2 values, got shapes {x.shape} and {y.shape}")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("NaN is not a rank: score NaN candidates as -inf (the worst) or leave them out")
    return x, y


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_a)(n0 - ties_b)); nan when a side is constant."""
    x, y = _pair(a, b)
    i, j = np.triu_indices(len(x), k=1)
    # comparisons, not differences: inf - inf is NaN, inf > inf is a tie
    sx = (x[i] > x[j]).astype(np.int64) - (x[i] < x[j]).astype(np.int64)
    sy = (y[i] > y[j]).astype(np.int64) - (y[i] < y[j]).astype(np.int64)
    denom = np.sqrt(np.count_nonzero(sx) * np.count_nonzero(sy))
    return float(np.sum(sx * sy) / denom) if denom else float("nan")


def average_ranks(a: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    x = np.asarray(a, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman_rho(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the average ranks; nan when a side is constant."""
    x, y = _pair(a, b)
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denom) if denom else float("nan")
