"""Kendall tau-b and Spearman rho against hand-counted values (and scipy, where it is installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekd.stages.search.correlation import average_ranks, kendall_tau, spearman_rho


def test_perfect_and_reversed_orderings() -> None:
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert kendall_tau(a, [10, 20, 30, 40, 50]) == 1.0 and spearman_rho(a, [1, 4, 9, 16, 25]) == 1.0
    assert kendall_tau(a, a[::-1]) == -1.0 and spearman_rho(a, a[::-1]) == pytest.approx(-1.0)


def test_kendall_by_hand_without_ties() -> None:
    # pairs of [1, 2, 3, 4] vs [1, 3, 2, 4]: 5 concordant, 1 discordant -> (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)


def test_kendall_tau_b_with_ties_by_hand() -> None:
    # x = [1, 1, 2, 3], y = [1, 2, 2, 3]: of 6 pairs, (0,1) tied in x, (1,2) tied in y, the other 4 concordant
    # tau-b = 4 / sqrt((6 - 1) * (6 - 1)) = 0.8
    assert kendall_tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)


def test_average_ranks_share_ties_and_spearman_by_hand() -> None:
    assert average_ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    # no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)); ranks [1,2,3,4,5] vs [2,1,4,3,5] -> d^2 = 4 -> 0.8
    assert spearman_rho([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)


def test_constant_side_is_nan_and_bad_input_is_refused() -> None:
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3])) and math.isnan(spearman_rho([1, 2, 3], [5, 5, 5]))
    with pytest.raises(ValueError, match="equally long"):
        kendall_tau([1, 2], [1, 2, 3])


def test_agrees_with_scipy_on_random_data_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.integers(0, 6, 30), rng.normal(size=30).round(1)
        assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
        assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
