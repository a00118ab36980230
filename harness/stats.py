"""The statistical primitives of the leaderboard, each checked against scipy or a simulation in the
tests: means, the sample standard deviation, t-intervals, the paired t-test and Holm's adjustment."""

from __future__ import annotations

import math

from scipy import stats

LEVEL = 0.95  # of every interval


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def statistics_std(values: list[float]) -> float | None:
    """Sample standard deviation (ddof = 1), None for fewer than 2 values."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def t_interval(values: list[float], level: float = LEVEL) -> tuple[float, float] | None:
    """The ``level`` t-interval of the mean of ``values`` (df = n - 1); None below 2 values."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    std = statistics_std(values) or 0.0
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * std / math.sqrt(len(values))
    return mean - half, mean + half


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None): the i-th smallest of m is multiplied by
    ``m - i + 1``, made non-decreasing in that order, and capped at 1."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for k, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - k) * p))
        out[i] = running
    return out


def paired_test(a: dict[int, float], b: dict[int, float]) -> tuple[float | None, int]:
    """Two-sided paired t-test of ``a - b`` over their common seeds: ``(p, n_pairs)``;
    p is None below 2 pairs or when every difference is identical (no spread to test)."""
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None, len(common)
    diffs = [a[s] - b[s] for s in common]
    if max(diffs) - min(diffs) == 0:
        return None, len(common)
    n = len(diffs)
    t = (sum(diffs) / n) / ((statistics_std(diffs) or 0.0) / math.sqrt(n))
    return min(1.0, float(2 * stats.t.sf(abs(t), n - 1))), n  # scipy's ttest_rel, without its overhead
