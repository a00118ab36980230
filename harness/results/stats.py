"""The statistical primitives of the leaderboard, each checked against scipy or a simulation in the
tests: means, the sample standard deviation, t-intervals, the paired t-test, the two one-sided
tests of equivalence (TOST), Holm's adjustment and its weighted form, the smallest effect a test
detects with a given power, and rliable's probability of improvement.

The array functions take differences along the last axis with NaN for an absent pair, and any
leading axes (the simulations in the tests run thousands of boards at once through them)."""

from __future__ import annotations

import math

import numpy as np

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
    from scipy import stats  # here, not at the top: a command that shows no standing never loads scipy

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
    from scipy import stats

    n = len(diffs)
    t = (sum(diffs) / n) / ((statistics_std(diffs) or 0.0) / math.sqrt(n))
    return min(1.0, float(2 * stats.t.sf(abs(t), n - 1))), n  # scipy's ttest_rel, without its overhead


# ---- arrays: any leading axes, the pairs along the last one (NaN: no pair) ---------------------------


class Paired:
    """The paired t statistics of differences ``d`` (``(..., S)``, NaN where a pair is absent), each an
    array of the leading shape: ``n`` pairs, ``diff`` their mean (NaN without a pair), ``low``/``high``
    the ``level`` t-interval (NaN below 2 pairs), ``se`` the standard error, ``p`` the two-sided p-value
    and ``p_equivalent`` the TOST p-value for the margin (NaN where not testable: below 2 pairs, or
    every difference identical)."""

    def __init__(self, d: np.ndarray, *, level: float = LEVEL, margin: float | None = None) -> None:
        d = np.asarray(d, dtype=float)
        valid = ~np.isnan(d)
        self.n = valid.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.diff = np.where(self.n > 0, np.where(valid, d, 0.0).sum(axis=-1) / np.maximum(self.n, 1), np.nan)
            dev = np.where(valid, d - self.diff[..., None], 0.0)
            sd = np.sqrt((dev**2).sum(axis=-1) / np.maximum(self.n - 1, 1))
            self.se = np.where(self.n >= 2, sd / np.sqrt(np.maximum(self.n, 1)), np.nan)
            if not (self.n >= 2).any():  # one seed each: nothing has an interval or a test (and scipy stays unloaded)
                nan = np.full(self.n.shape, np.nan)
                self.low, self.high, self.p, self.p_equivalent = nan, nan.copy(), nan.copy(), nan.copy()
                self.testable = np.zeros(self.n.shape, dtype=bool)
                return
            from scipy import stats

            df = np.maximum(self.n - 1, 1)
            half = stats.t.ppf(0.5 + level / 2, df) * self.se
            self.low, self.high = self.diff - half, self.diff + half
            spread = np.where(valid, d, -np.inf).max(axis=-1, initial=-np.inf) - np.where(valid, d, np.inf).min(
                axis=-1, initial=np.inf
            )
            self.testable = (self.n >= 2) & (spread > 0)
            t = np.where(self.testable, self.diff / np.where(self.testable, self.se, 1.0), np.nan)
            self.p = np.where(self.testable, np.minimum(1.0, 2 * stats.t.sf(np.abs(t), df)), np.nan)
            self.p_equivalent = np.full_like(self.p, np.nan)
            if margin is not None:
                se = np.where(self.testable, self.se, 1.0)
                above_lower = stats.t.sf((self.diff + margin) / se, df)  # H0: diff <= -margin
                below_upper = stats.t.cdf((self.diff - margin) / se, df)  # H0: diff >= +margin
                self.p_equivalent = np.where(self.testable, np.maximum(above_lower, below_upper), np.nan)


def weighted_holm(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Holm's weighted step-down adjusted p-values along the last axis (Holm 1979): order the tests by
    ``p / w``; the j-th is rejected at level alpha when it and every earlier one have
    ``p <= alpha * w / (the weight of the tests not yet rejected)``. With equal weights it is Holm's
    method. NaN p-values are not tested (they stay NaN and carry no weight); the weights of the
    tested ones should sum to at most 1. It controls the family-wise error under any dependence."""
    p, w = np.broadcast_arrays(np.asarray(p, dtype=float), np.asarray(w, dtype=float))
    valid = ~np.isnan(p) & (w > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(valid, p / np.where(valid, w, 1.0), np.inf)
        order = np.argsort(q, axis=-1, kind="stable")
        qs = np.take_along_axis(q, order, axis=-1)
        ws = np.take_along_axis(np.where(valid, w, 0.0), order, axis=-1)
        remaining = np.cumsum(ws[..., ::-1], axis=-1)[..., ::-1]
        adjusted = np.where(np.isfinite(qs), np.minimum(1.0, qs * remaining), np.nan)
        adjusted = np.fmax.accumulate(adjusted, axis=-1)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return np.where(valid, out, np.nan)


def detectable(n: int, sd: float, level: float, power: float = 0.8) -> float | None:
    """The smallest true mean difference a two-sided paired t-test over ``n`` pairs at ``level``
    detects with probability ``power`` when the differences have standard deviation ``sd`` (the
    noncentral t distribution); None below 2 pairs or without spread."""
    if n < 2 or not sd > 0 or not 0 < level < 1:
        return None
    from scipy import integrate, optimize, stats

    df, crit = n - 1, float(stats.t.ppf(1 - level / 2, n - 1))

    def short(ncp: float) -> float:
        # P(|Z + ncp| > crit sqrt(V / df)), V ~ chi2(df): the noncentral t's tails, integrated directly
        # (scipy's nct loses its accuracy at the large noncentralities 2 degrees of freedom need)
        def tails(v: float) -> float:
            c = crit * math.sqrt(v / df)
            return float((stats.norm.sf(c - ncp) + stats.norm.cdf(-c - ncp)) * stats.chi2.pdf(v, df))

        return float(integrate.quad(tails, 0, np.inf, limit=200)[0]) - power

    high = 1.0
    while short(high) < 0:
        high *= 2
    ncp = float(optimize.brentq(short, 0.0, high, xtol=1e-10))
    return ncp * sd / math.sqrt(n)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """rliable's P(X > Y) (Agarwal et al. 2021): per task (axis -2: the architectures), the share of
    (run of X, run of Y) pairs in which X is higher, ties counting one half (the Mann-Whitney U over
    n m), averaged over the tasks. ``x``, ``y``: ``(..., tasks, runs)`` with NaN for an absent run.
    Descriptive: not a test. NaN where a task has no run of one of them."""
    x, y = np.asarray(x, dtype=float)[..., :, None], np.asarray(y, dtype=float)[..., None, :]
    both = ~np.isnan(x) & ~np.isnan(y)
    with np.errstate(invalid="ignore"):
        wins = np.where(both, (x > y) + 0.5 * (x == y), 0.0).sum(axis=(-2, -1))
        per_task = wins / both.sum(axis=(-2, -1))
    return per_task.mean(axis=-1)
