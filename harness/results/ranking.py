"""Scores, ranks and rank ranges of one comparison group, as arrays (any leading axes: one board, or
thousands in the simulations of the tests), from per-seed accuracies and the significant results
alone; :mod:`harness.results.family` calls them.

The score of an entry is the geometric mean over the architectures of its per-architecture mean
accuracies over the protocol's seeds. Its interval is the t-interval over its *per-seed scores*
(each seed's geometric mean across the architectures): a seed fixes the initialisation and data
order on every architecture, so the per-seed scores are the entry's independent replicates, and
their t-interval has the stated coverage (simulated in the tests for any correlation of the
architectures' seed effects, normal and heavy-tailed noise).

Rank ranges by their plain definition: with ``above[i, j]`` meaning i is significantly above j (an
adjusted p-value below alpha in the group's family, and i's mean paired difference positive), i's
range runs from 1 + (entries significantly above i) to n - (entries significantly below i). When
every significant result is right, every true rank lies inside its range; so the ranges hold
together at least as often as the family-wise error is held.
"""

from __future__ import annotations

import numpy as np


def seed_scores(acc: np.ndarray) -> np.ndarray:
    """``(..., A, S)`` accuracies -> ``(..., S)`` per-seed scores: the geometric mean over the
    architectures (0 when one is 0 or less; NaN when one is absent)."""
    acc = np.asarray(acc, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        gm = np.exp(np.log(np.where(acc > 0, acc, 1.0)).mean(axis=-2))
    return np.where(np.isnan(acc).any(axis=-2), np.nan, np.where((acc <= 0).any(axis=-2), 0.0, gm))


def scores(acc: np.ndarray, protocol: np.ndarray) -> np.ndarray:
    """The score: the geometric mean over the architectures of the per-architecture means over the
    protocol's seeds (``(..., A, S)`` -> ``(...)``; NaN when a protocol seed is absent)."""
    chosen = np.asarray(acc, dtype=float)[..., protocol]
    with np.errstate(invalid="ignore", divide="ignore"):  # no protocol seed at all: NaN, not scored
        means = chosen.sum(axis=-1) / chosen.shape[-1] if chosen.shape[-1] else np.full(chosen.shape[:-1], np.nan)
        gm = np.exp(np.log(np.where(means > 0, means, 1.0)).mean(axis=-1))
    return np.where(np.isnan(means).any(axis=-1), np.nan, np.where((means <= 0).any(axis=-1), 0.0, gm))


def competition_ranks(score: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    """``(..., E)`` -> one plus the number of ranked entries with a strictly higher score (``1, 1, 3``);
    0 for an entry not ranked."""
    s = np.where(ranked, score, np.nan)
    with np.errstate(invalid="ignore"):
        higher = (s[..., None, :] > s[..., :, None]).sum(axis=-1)
    return np.where(ranked, 1 + higher, 0)


def rank_ranges(above: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    """``(..., E, E)`` significant results -> ``(..., E, 2)``: best = 1 + the entries significantly
    above, worst = the ranked entries' count - the entries significantly below; 0 for an entry not
    ranked (``above`` holds ranked entries only)."""
    n = int(np.asarray(ranked).sum())
    out = np.stack([1 + above.sum(axis=-2), n - above.sum(axis=-1)], axis=-1)
    return np.where(np.asarray(ranked)[..., None], out, 0)
