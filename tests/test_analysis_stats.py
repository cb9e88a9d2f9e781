from __future__ import annotations

import itertools
import math
import statistics

import pytest

from engine.analysis.stats import (
    is_successful,
    mean_ci95,
    mean_ci95_of,
    pass_hat_k,
    pass_hat_ks,
    t_quantile_975,
)


def _pass_hat_k_by_enumeration(outcomes: list[bool], k: int) -> float:
    subsets = list(itertools.combinations(outcomes, k))
    return sum(all(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize(
    "outcomes",
    [[True, True, False, True], [False] * 3, [True] * 5, [True, False, True, False, True]],
    ids=["3of4", "none", "all", "3of5"],
)
def test_pass_hat_k_equals_the_share_of_all_success_k_subsets(outcomes: list[bool]) -> None:
    for k in range(1, len(outcomes) + 1):
        expected = _pass_hat_k_by_enumeration(outcomes, k)
        assert pass_hat_k(len(outcomes), sum(outcomes), k) == pytest.approx(expected)


def test_pass_hat_ks_stops_at_the_smallest_task_and_averages_tasks() -> None:
    result = pass_hat_ks([(4, 3), (3, 1)])
    assert list(result) == [1, 2, 3]
    assert result[1] == pytest.approx((3 / 4 + 1 / 3) / 2)
    assert result[3] == pytest.approx((1 / 4 + 0) / 2)
    assert pass_hat_ks([]) == {}


def test_pass_hat_k_rejects_k_above_trials() -> None:
    with pytest.raises(ValueError, match="less than k"):
        pass_hat_k(2, 1, 3)


@pytest.mark.parametrize(
    ("reward", "success"),
    [(1.0, True), (1 - 5e-7, True), (1 + 5e-7, True), (0.999, False), (0.0, False), (1.01, False)],
)
def test_success_is_reward_within_one_millionth_of_one(reward: float, success: bool) -> None:
    assert is_successful(reward) is success


@pytest.mark.parametrize(
    ("df", "expected"),
    # Reference values of Student's t 0.975 quantile (standard tables).
    [(1, 12.706205), (9, 2.262157), (30, 2.042272), (31, 2.039513), (60, 2.000298),
     (120, 1.979930), (1000, 1.962339)],
)  # fmt: skip
def test_t_quantile_matches_reference_values(df: int, expected: float) -> None:
    assert t_quantile_975(df) == pytest.approx(expected, abs=2e-6)


def test_t_quantile_agrees_with_scipy_when_available() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 400):
        assert t_quantile_975(df) == pytest.approx(float(stats.t.ppf(0.975, df)), abs=2e-6)


def test_mean_ci95_is_student_t_interval() -> None:
    values = [1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.0, 1.0]
    ci = mean_ci95_of(values)
    half = 2.262157 * statistics.stdev(values) / math.sqrt(len(values))
    assert ci.mean == pytest.approx(statistics.mean(values))
    assert ci.ci95_low == pytest.approx(statistics.mean(values) - half, abs=1e-6)
    assert ci.ci95_high == pytest.approx(statistics.mean(values) + half, abs=1e-6)


def test_mean_ci95_has_no_interval_below_two_values() -> None:
    assert mean_ci95(0, None, None).mean is None
    one = mean_ci95_of([0.5])
    assert one.mean == 0.5 and one.ci95_low is None and one.ci95_high is None
