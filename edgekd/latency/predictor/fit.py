"""Fitting a latency table: non-negative, Huber-weighted least squares on relative error over whole models.

Each model is a row of features: a per-model overhead, the input MB, the weight MB beyond the cache, and for
every kernel type its count, MMACs and MB moved (:class:`~edgekd.latency.predictor.kernels.Graph`).
"""

from __future__ import annotations

import numpy as np

from edgekd.latency.predictor.kernels import Graph

TERMS = ("count", "macs", "bytes")
# units of the fitted coefficients: ms per kernel, ms per million MACs, ms per MB moved
SCALE = {"count": 1.0, "macs": 1e-6, "bytes": 1e-6}
CACHE_CHOICES_MB = (0.5, 1.0, 2.0, 4.0, 8.0, 1e9)
CHANNEL_BLOCKS = (1, 8, 16)  # channel padding of blocked layouts (ORT NCHWc: 8 on AVX2, 16 on AVX-512)
N_GLOBAL = 3  # overhead, input MB, weight MB beyond the cache


def features(graph: Graph, types: list[str], cache_mb: float) -> np.ndarray:
    per = graph.by_type()
    row = [1.0, graph.input_bytes * 1e-6, max(0.0, graph.weight_bytes * 1e-6 - cache_mb)]
    for t in types:
        agg = per.get(t, {})
        row += [agg.get(term, 0.0) * SCALE[term] for term in TERMS]
    return np.asarray(row, dtype=np.float64)


def nnls(a: np.ndarray, b: np.ndarray, iters: int = 500) -> np.ndarray:
    """Non-negative least squares (Lawson-Hanson active set): argmin ||a x - b|| subject to x >= 0."""
    n = a.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = a.T @ (b - a @ x)
    tol = 1e-12 * max(1.0, float(np.abs(w).max()) if n else 1.0)
    for _ in range(iters):
        if passive.all() or not (w[~passive] > tol).any():
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = float(np.min(x[neg] / (x[neg] - z[neg] + 1e-300)))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
            x[~passive] = 0.0
        w = a.T @ (b - a @ x)
    return x


def fit(
    graphs: list[Graph],
    p50_ms: list[float],
    ridge: float = 1e-3,
    huber: float = 0.15,
    cache_mb: float | None = None,
) -> tuple[list[str], np.ndarray, float]:
    """Kernel types seen, the non-negative coefficients minimising the relative error (Huber-weighted: models off
    by more than ``huber`` count less, so one disturbed measurement cannot bend the whole table), and the cache
    size (MB of weights a model keeps in cache; beyond it every inference streams weights from memory), chosen
    among CACHE_CHOICES_MB by the fit's weighted error unless given."""
    if cache_mb is None:
        best = min(((_fit_once(graphs, p50_ms, ridge, huber, c), c) for c in CACHE_CHOICES_MB), key=lambda fc: fc[0][2])
        (types, coef, _), chosen = best
        return types, coef, chosen
    types, coef, _ = _fit_once(graphs, p50_ms, ridge, huber, cache_mb)
    return types, coef, cache_mb


def _fit_once(
    graphs: list[Graph], p50_ms: list[float], ridge: float, huber: float, cache_mb: float
) -> tuple[list[str], np.ndarray, float]:
    types = sorted({t for g in graphs for t in g.by_type()})
    x = np.stack([features(g, types, cache_mb) for g in graphs])
    y = np.asarray(p50_ms, dtype=np.float64)
    a0 = x / y[:, None]  # relative error: (x c - y) / y
    norms = np.linalg.norm(a0, axis=0)
    norms[norms == 0] = 1.0
    a0 = a0 / norms
    weights = np.ones_like(y)
    coef = np.zeros(a0.shape[1])
    for _ in range(5):  # iteratively reweighted least squares
        a = a0 * weights[:, None]
        b = weights.copy()
        if ridge:  # a little shrinkage keeps nearly collinear columns (one Flatten per model) from fighting
            a = np.vstack([a, np.sqrt(ridge) * np.eye(a.shape[1])])
            b = np.concatenate([b, np.zeros(a.shape[1])])
        coef = nnls(a, b)
        r = np.abs(a0 @ coef - 1.0)
        weights = np.sqrt(np.where(r <= huber, 1.0, huber / np.maximum(r, 1e-12)))
    r = np.abs(a0 @ coef - 1.0)
    loss = float(np.sum(np.where(r <= huber, r**2, huber * (2 * r - huber))))
    return types, coef / norms, loss
