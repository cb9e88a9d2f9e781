"""Small statistics used by the metrics: tau2 success, pass^k, a t-based 95% CI."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SUCCESS_TOLERANCE = 1e-6

# Student-t 0.975 quantiles for 1..30 degrees of freedom; beyond 30 the
# Cornish-Fisher expansion below is accurate to better than 1e-6.
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
    2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
    2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
    2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip
_Z975 = 1.959963984540054


def is_successful(reward: float) -> bool:
    """tau2's definition: the reward is within 1e-6 of 1."""
    return (1 - SUCCESS_TOLERANCE) <= reward <= (1 + SUCCESS_TOLERANCE)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * df**4)
    )


@dataclass(frozen=True, kw_only=True)
class MeanCI:
    """A sample mean with its two-sided 95% Student-t confidence interval."""

    n: int
    """Number of observations."""
    mean: float | None
    """Sample mean; None when there are no observations."""
    std: float | None
    """Sample standard deviation (n - 1); None below two observations."""
    ci95_low: float | None
    """Lower bound of the 95% interval; None below two observations."""
    ci95_high: float | None
    """Upper bound of the 95% interval; None below two observations."""


def mean_ci95(n: int, mean: float | None, std: float | None) -> MeanCI:
    """Build the interval from aggregates (so SQL can do the summing)."""
    if n == 0 or mean is None:
        return MeanCI(n=n, mean=None, std=None, ci95_low=None, ci95_high=None)
    if n < 2 or std is None or math.isnan(std):
        return MeanCI(n=n, mean=mean, std=None, ci95_low=None, ci95_high=None)
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return MeanCI(n=n, mean=mean, std=std, ci95_low=mean - half, ci95_high=mean + half)


def mean_ci95_of(values: Sequence[float]) -> MeanCI:
    """The same interval straight from values (tests and small inputs)."""
    n = len(values)
    if n == 0:
        return mean_ci95(0, None, None)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return mean_ci95(n, mean, std)


def pass_hat_k(num_trials: int, success_count: int, k: int) -> float:
    """C(c, k) / C(n, k): the chance that k trials drawn without replacement all succeed."""
    if num_trials < k:
        raise ValueError(f"number of trials {num_trials} is less than k {k}")
    return math.comb(success_count, k) / math.comb(num_trials, k)


def pass_hat_ks(per_task: Iterable[tuple[int, int]]) -> dict[int, float]:
    """pass^k for k = 1..min trials, averaged over tasks given as (trials, successes)."""
    tasks = list(per_task)
    if not tasks:
        return {}
    max_k = min(n for n, _ in tasks)
    return {k: sum(pass_hat_k(n, c, k) for n, c in tasks) / len(tasks) for k in range(1, max_k + 1)}
