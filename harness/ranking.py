"""Score intervals and rank ranges of one comparison group, from per-seed values alone (no
leaderboard types: :mod:`harness.aggregate` feeds them and the simulations in the tests call them).

The score of an entry is the geometric mean over the architectures of its per-architecture mean
accuracies. Its interval is the t-interval over its *per-seed scores* (each seed's geometric mean
across the architectures): a seed fixes the initialisation and data order on every architecture,
so the per-seed scores are the entry's independent replicates, and their t-interval has the
stated coverage (simulated in the tests: 0.93-0.97 with two and with three architectures). The
geometric mean of the per-architecture intervals' ends, used before, covered 99.5-99.9%.

Rank ranges come from the pairwise tests: entry i is *significantly above* j when their paired
test over (architecture, seed) has a Holm-adjusted p below alpha (in the group's one family) and i's
mean paired difference is positive. Then i's range runs from 1 + (entries significantly above i)
to n - (entries significantly below i), the ranks it can take in an order that contradicts no
significant result, and it never reaches the rank of an entry it is significantly above or below.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from harness.stats import geometric_mean, t_interval


def seed_scores(per_arch: Mapping[str, Mapping[int, float]]) -> dict[int, float]:
    """``seed -> geometric mean over the architectures of that seed's accuracy``, for the seeds
    every architecture has (a zero accuracy makes that seed's score 0)."""
    if not per_arch:
        return {}
    seeds = set.intersection(*(set(v) for v in per_arch.values()))
    out = {}
    for seed in sorted(seeds):
        values = [v[seed] for v in per_arch.values()]
        out[seed] = 0.0 if min(values) <= 0 else geometric_mean(values)
    return out


def score_interval(per_arch: Mapping[str, Mapping[int, float]]) -> tuple[float, float] | None:
    """The 95% t-interval of the mean per-seed score (None below 2 seeds common to every architecture)."""
    return t_interval(list(seed_scores(per_arch).values()))


def competition_ranks(scores: list[float]) -> list[int]:
    """``1, 1, 3``: one plus the number of strictly higher scores."""
    return [1 + sum(o > s for o in scores) for s in scores]


def rank_ranges(scores: list[float], above: Collection[tuple[int, int]]) -> list[tuple[int, int]]:
    """Per entry, ``(best, worst)`` rank allowed by the significant pairs ``above`` (``(i, j)``: i is
    significantly above j). Best is 1 + the entries above it, worst n - the entries below it; then
    the range is kept off the rank of every entry it is significantly above or below (a pair whose
    direction disagrees with the scores' order cannot move an entry's range past its own rank)."""
    n = len(scores)
    ranks = competition_ranks(scores)
    out = []
    for i in range(n):
        over = [j for j, k in above if k == i]
        under = [k for j, k in above if j == i]
        best, worst = 1 + len(over), n - len(under)
        best = max([best] + [min(ranks[i], ranks[j] + 1) for j in over])
        worst = min([worst] + [max(ranks[i], ranks[k] - 1) for k in under])
        out.append((min(best, ranks[i]), max(worst, ranks[i])))
    return out
