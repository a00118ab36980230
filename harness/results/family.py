"""Every significance claim of one comparison group, computed from per-seed accuracies as arrays, for
one board (:mod:`harness.results.aggregate` calls it with one) or thousands at once (the simulations in
``tests/test_statistics_simulation.py`` call the same function).

The independent unit is the seed: a seed fixes the initialisation and the data order on every
architecture, so the runs of one seed are correlated across architectures by an unknown amount,
and the seeds are independent of each other. So every test here is a paired t-test over
**per-seed scores** (a seed's score: the geometric mean over the architectures of that seed's
accuracies; on one architecture, its accuracy), over the seeds both sides have (df = pairs - 1).
Nothing is pooled over (architecture, seed): that treats the runs of one seed as independent and
overstates the evidence when they are correlated.

The family, per group, adjusted with Holm's weighted step-down method (:func:`harness.results.stats.weighted_holm`):

- *primary* (share :data:`PRIMARY_SHARE` of alpha when there are pairwise tests, else all of it):
  each ranked entry against ``equal_weighting``; each ranked entry that is not a static weight
  against the tuned static weight (:func:`leave_one_seed_out`), a difference test and an
  equivalence test (TOST, margin :data:`MARGIN`);
- *pairwise* (the rest): every pair of ranked entries neither of which is ``equal_weighting``
  (a pair with it is that entry's primary test): they give the rank ranges.

Equal weights within each part. Only ranked entries (complete, the version the board ranks) are
tested: an incomplete entry gets no claim. Claims: ``*`` (against equal weighting), *significantly
above* (rank ranges: best = 1 + the entries significantly above, worst = n - those significantly
below) and the label against the tuned static weight (better / worse / equivalent /
inconclusive); each is an adjusted p-value below :data:`ALPHA`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.results.ranking import competition_ranks, rank_ranges, scores, seed_scores
from harness.results.stats import Paired, detectable, probability_of_improvement, weighted_holm

ALPHA = 0.05
MARGIN = 0.3  # points of score: within it, "equivalent" to the tuned static weight (docs/statistics.md)
PRIMARY_SHARE = 0.8  # of alpha, for the primary tests when the group has pairwise tests too
LABELS = ("", "better", "equivalent", "worse", "inconclusive")  # codes of Claims.tuned_label


def leave_one_seed_out(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tuned static weight: ``values`` ``(..., K, S)`` are the K static weights' per-seed scores.
    For each seed s that every weight has, the weight with the best mean score over the *other* such
    seeds is chosen (the first in order on a tie) and its seed-s score is the comparator's. Returns
    ``(comparator (..., S), chosen index (..., S))``; NaN and -1 where a seed is not common to every
    weight or fewer than 2 are."""
    values = np.asarray(values, dtype=float)
    common = ~np.isnan(values).any(axis=-2)  # (..., S)
    n = common.sum(axis=-1)[..., None, None]
    kept = np.where(common[..., None, :], values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        others = (kept.sum(axis=-1, keepdims=True) - kept) / (n - 1)  # (..., K, S): mean over the other seeds
    choice = np.argmax(np.where(np.isnan(others), -np.inf, others), axis=-2)  # (..., S)
    value = np.take_along_axis(values, choice[..., None, :], axis=-2)[..., 0, :]
    usable = common & (n[..., 0, 0] >= 2)[..., None]
    return np.where(usable, value, np.nan), np.where(usable, choice, -1)


@dataclass(frozen=True)
class Claims:
    """What :func:`claims` found, every array with the boards' leading axis B. E entries, S seeds,
    P pairs (``pairs``: their ``(i, j)`` indices, i < j). Untested slots are NaN (p) or False."""

    seed_score: np.ndarray  # (B, E, S)
    score: np.ndarray  # (B, E): NaN unless complete on the protocol's seeds
    score_ci: np.ndarray  # (B, E, 2): t-interval over the protocol's per-seed scores (ranked entries)
    rank: np.ndarray  # (B, E): competition rank among the ranked entries, 0 if not ranked
    rank_range: np.ndarray  # (B, E, 2): best and worst rank the significant results allow
    vs_ref: Paired  # (B, E): against equal weighting, on the seeds both have
    vs_ref_adjusted: np.ndarray  # (B, E)
    comparator: np.ndarray  # (B, S): the tuned static weight's per-seed score
    choice: np.ndarray  # (B, S): index into ``sweep`` of the weight chosen for that seed, -1 none
    vs_tuned: Paired  # (B, E): against the tuned static weight (with p_equivalent)
    vs_tuned_adjusted: np.ndarray  # (B, E)
    equivalent_adjusted: np.ndarray  # (B, E)
    tuned_label: np.ndarray  # (B, E): codes into LABELS
    pairs: list[tuple[int, int]]
    pair: Paired  # (B, P): i - j
    pair_adjusted: np.ndarray  # (B, P)
    weights: np.ndarray  # (B, 3E + P): each slot's share of alpha (0: not in the family)
    above: np.ndarray  # (B, E, E): [i, j] = i significantly above j
    improvement: np.ndarray  # (B, E): rliable's P(entry > equal weighting), descriptive
    sweep: tuple[int, ...]

    def family_size(self, b: int = 0) -> int:
        return int((self.weights[b] > 0).sum())


def claims(
    acc: np.ndarray,
    protocol: np.ndarray,
    ranked: np.ndarray,
    ref: int | None,
    sweep: tuple[int, ...] = (),
    *,
    alpha: float = ALPHA,
    margin: float = MARGIN,
) -> Claims:
    """Every test and claim of one comparison group on B boards at once.

    ``acc``: ``(B, E, A, S)`` best fine accuracies (NaN: no ok run of that seed); ``protocol``: ``(S,)``
    which seed columns are the protocol's (the score and its interval use those only; the tests use
    every seed both sides have); ``ranked``: ``(E,)`` the entries ranked and tested (complete, and
    the version the board ranks); ``ref``: equal weighting's index (tested against only when ranked);
    ``sweep``: the static weights' indices in order of weight (the ranked ones are the candidates)."""
    acc = np.asarray(acc, dtype=float)
    protocol, ranked = np.asarray(protocol, dtype=bool), np.asarray(ranked, dtype=bool)
    B, E, _, S = acc.shape
    x = seed_scores(acc)  # (B, E, S)
    score = scores(acc, protocol)
    own = Paired(x[..., protocol])
    score_ci = np.stack([own.low, own.high], axis=-1)

    r = -1 if ref is None else int(ref)
    has_ref = r >= 0 and bool(ranked[r])  # tested against only when it is ranked; compared with anyway
    tested_ref = ranked & has_ref
    if r >= 0:
        tested_ref[r] = False
    vs_ref = Paired(x - x[:, [r], :]) if r >= 0 else Paired(np.full_like(x, np.nan))
    candidates = tuple(k for k in sweep if ranked[k])
    if len(candidates) >= 2:
        comparator, picked = leave_one_seed_out(x[:, list(candidates), :])
        choice = np.where(picked >= 0, np.asarray(candidates)[np.maximum(picked, 0)], -1)
        targets = ranked & ~np.isin(np.arange(E), sweep)
    else:
        comparator, choice = np.full((B, S), np.nan), np.full((B, S), -1)
        targets = np.zeros(E, dtype=bool)
    vs_tuned = Paired(x - comparator[:, None, :], margin=margin)
    pairs = [
        (i, j) for i in range(E) for j in range(i + 1, E) if ranked[i] and ranked[j] and not (has_ref and r in (i, j))
    ]
    ii, jj = np.array([i for i, _ in pairs], dtype=int), np.array([j for _, j in pairs], dtype=int)
    pair = Paired(x[:, ii, :] - x[:, jj, :]) if pairs else Paired(np.full((B, 0, S), np.nan))

    p = np.concatenate(
        [
            np.where(tested_ref, vs_ref.p, np.nan),
            np.where(targets, vs_tuned.p, np.nan),
            np.where(targets, vs_tuned.p_equivalent, np.nan),
            pair.p,
        ],
        axis=-1,
    )
    primary = np.arange(p.shape[-1]) < 3 * E
    valid = ~np.isnan(p)
    n_primary, n_pair = (valid & primary).sum(-1), (valid & ~primary).sum(-1)
    share = np.where(n_pair > 0, np.where(n_primary > 0, PRIMARY_SHARE, 0.0), 1.0)  # (B,)
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = np.where(
            valid, np.where(primary, share[:, None] / n_primary[:, None], (1 - share)[:, None] / n_pair[:, None]), 0.0
        )
    adjusted = weighted_holm(p, weights)
    significant = adjusted < alpha
    ref_adj, tuned_adj, eq_adj = (adjusted[:, k * E : (k + 1) * E] for k in range(3))
    pair_adj = adjusted[:, 3 * E :]

    above = np.zeros((B, E, E), dtype=bool)
    if has_ref:
        sig = significant[:, :E]
        above[:, :, r] |= sig & (vs_ref.diff > 0)
        above[:, r, :] |= sig & (vs_ref.diff < 0)
    if pairs:
        sig, up = significant[:, 3 * E :], pair.diff > 0
        above[:, ii, jj] |= sig & up  # each pair once: no repeated index
        above[:, jj, ii] |= sig & ~up

    rank = competition_ranks(score, ranked)
    rank_range = rank_ranges(above, ranked)

    sig_tuned, sig_eq = significant[:, E : 2 * E], significant[:, 2 * E : 3 * E]
    label = np.where(
        ~targets | np.isnan(vs_tuned.diff),
        0,
        np.where(sig_tuned, np.where(vs_tuned.diff > 0, 1, 3), np.where(sig_eq, 2, 4)),
    )
    improvement = np.full((B, E), np.nan)
    if has_ref:
        improvement = np.where(ranked, probability_of_improvement(acc, acc[:, [r]]), np.nan)
        improvement[:, r] = np.nan
    return Claims(
        seed_score=x,
        score=score,
        score_ci=np.where(ranked[None, :, None], score_ci, np.nan),
        rank=rank,
        rank_range=rank_range,
        vs_ref=vs_ref,
        vs_ref_adjusted=ref_adj,
        comparator=comparator,
        choice=choice,
        vs_tuned=vs_tuned,
        vs_tuned_adjusted=tuned_adj,
        equivalent_adjusted=eq_adj,
        tuned_label=label,
        pairs=pairs,
        pair=pair,
        pair_adjusted=pair_adj,
        weights=weights,
        above=above,
        improvement=improvement,
        sweep=tuple(sweep),
    )


@dataclass(frozen=True)
class Power:
    """What one board can detect (board 0 of a :class:`Claims`): the smallest true difference in score
    from equal weighting that its test finds with 80% power, and the smallest between two ranked
    entries, at the level Holm's first step gives one test, given ``seeds`` paired seeds and ``sd``,
    the observed standard deviation of the per-seed differences (pooled over the entries tested
    against equal weighting). None where nothing is tested."""

    seeds: int
    sd: float | None
    tests: int
    level_primary: float | None
    level_pair: float | None
    vs_ref: float | None
    pair: float | None


def power(c: Claims, alpha: float = ALPHA, b: int = 0) -> Power:
    tested = c.weights[b, : c.vs_ref.n.shape[-1]] > 0
    n = c.vs_ref.n[b][tested]
    se = c.vs_ref.se[b][tested]
    if not tested.any():
        return Power(0, None, c.family_size(b), None, None, None, None)
    var = (se**2) * n  # each entry's sample variance of its per-seed differences
    df = n - 1
    sd = float(np.sqrt((var * df).sum() / df.sum())) if df.sum() > 0 else None
    seeds = int(np.median(n))
    w = c.weights[b]
    npairs = len(c.pairs)
    level_primary = float(alpha * w[tested.nonzero()[0][0]])
    pair_w = w[3 * len(tested) :] if npairs else np.array([])
    level_pair = float(alpha * pair_w[pair_w > 0][0]) if (pair_w > 0).any() else None
    return Power(
        seeds=seeds,
        sd=sd,
        tests=c.family_size(b),
        level_primary=level_primary,
        level_pair=level_pair,
        vs_ref=detectable(seeds, sd or 0.0, level_primary),
        pair=None if level_pair is None else detectable(seeds, sd or 0.0, level_pair),
    )
