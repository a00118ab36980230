"""The board: each comparison group's entries tested, ranked and ordered, as the views show them.

:func:`groups` splits the entries of :func:`harness.results.aggregate.entries` by comparison group and
:func:`compare_group` runs one group's family of tests through :func:`harness.results.family.claims` (the
same function the simulations in the tests run on thousands of boards), then writes its results
into the standings: the score interval, the rank and its range, the comparison with
``equal_weighting`` and with the tuned static weight, the pairwise tests, and the tuned static
weight's own line. Only the *current* version of each entry (the newest, or the one the view
selects) that is complete is ranked and tested; every other line is listed without a claim.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.protocol import Phase
from harness.results import family
from harness.results.aggregate import (
    DEFAULT_SETTINGS,
    REFERENCE_BASELINE,
    ArchStats,
    Comparison,
    Standing,
    arch_stats,
    entries,
    geometric_mean,
    score_of,
    with_differences,
)
from harness.results.static_sweep import SWEEP, TUNED_LABEL


@dataclass(frozen=True)
class Group:
    """One comparison group: its lines in order (ranked ones by rank, then the unranked current
    versions by what they have, then the other versions), the tuned static weight's line (None
    without two complete static weights), and what its tests can detect (None: nothing tested)."""

    settings: str
    entries: list[Standing]
    tuned: Standing | None
    power: family.Power | None
    family_size: int


def groups(
    df: pd.DataFrame,
    phase: Phase,
    archs: list[str],
    protocol_seeds: tuple[int, ...] = (),
    selected: Mapping[tuple[str, str], str] | None = None,
) -> list[Group]:
    """Every comparison group of the measured rows of ``phase``: the task's settings first."""
    found = entries(df, phase, archs, protocol_seeds, selected)
    order = sorted({e.settings for e in found}, key=lambda g: (g != DEFAULT_SETTINGS, g))
    return [compare_group([e for e in found if e.settings == g], protocol_seeds) for g in order]


def standings(df: pd.DataFrame, phase: Phase, archs: list[str], protocol_seeds: tuple[int, ...] = ()) -> list[Standing]:
    """The lines of every group, in order (:func:`groups` without the groups)."""
    return [e for g in groups(df, phase, archs, protocol_seeds) for e in g.entries]


def reference_of(members: list[Standing]) -> Standing | None:
    """The group's ``equal_weighting``: its current version, None when absent."""
    found = [e for e in members if e.kind == "baseline" and e.submission == REFERENCE_BASELINE and e.current]
    return found[0] if len(found) == 1 else None


def compare_group(members: list[Standing], protocol_seeds: tuple[int, ...] = ()) -> Group:
    """One comparison group (entries with the same settings): the descriptive differences from its
    equal weighting, then the family of tests (:func:`harness.results.family.claims`) and what they allow."""
    if not members:
        return Group(DEFAULT_SETTINGS, [], None, None, 0)
    ref = reference_of(members)
    members = with_differences(members, ref)
    ref = next((e for e in members if e.version_key == ref.version_key), None) if ref else None
    # the ranked candidates first, best score first: pairs are stored with the better-scored entry
    members = sorted(members, key=lambda e: (not (e.complete and e.current), -(e.score or 0.0), e.label))
    archs = list(members[0].archs)
    seeds = sorted({s for e in members for a in e.archs.values() for s in (*a.seeds, *a.extra)})
    protocol = np.array([s in protocol_seeds for s in seeds] if protocol_seeds else [True] * len(seeds), dtype=bool)
    acc = np.full((1, len(members), len(archs), len(seeds)), np.nan)
    for i, e in enumerate(members):
        for k, arch in enumerate(archs):
            for seed, value in (e.archs[arch].seeds | e.archs[arch].extra).items():
                acc[0, i, k, seeds.index(seed)] = value
    ranked = np.array([e.complete and e.current for e in members], dtype=bool)
    if not protocol_seeds:  # a profile the harness does not know: the seeds every ranked entry has
        have = ~np.isnan(acc[0]).any(axis=1)  # (E, S)
        protocol = have[ranked].all(axis=0) if ranked.any() else protocol
        ranked &= have[:, protocol].all(axis=1) & protocol.any()
    sweep = sorted(
        (i for i, e in enumerate(members) if e.kind == "baseline" and e.submission in SWEEP and e.current),
        key=lambda i: SWEEP[members[i].submission],
    )
    ref_index = next((i for i, e in enumerate(members) if ref is not None and e is ref), None)
    c = family.claims(acc, protocol, ranked, ref_index, tuple(sweep))
    out = [_tested(c, members, i, ranked, ref_index, seeds, int(protocol.sum())) for i in range(len(members))]
    for n, (i, j) in enumerate(c.pairs):
        both = _paired(seeds, c.seed_score[0, i], c.seed_score[0, j])
        pair = _comparison(c.pair, c.pair_adjusted, n, "pairwise", c.weights[0, 3 * len(members) + n], both)
        out[i] = dataclasses.replace(out[i], pairs={**out[i].pairs, members[j].label: pair})
    tested = bool((c.weights[0] > 0).any())
    return Group(
        settings=members[0].settings,
        entries=_ordered(out),
        tuned=_tuned_line(c, members, archs, seeds, protocol),
        power=family.power(c) if tested else None,
        family_size=c.family_size(),
    )


def _value(a: np.ndarray, *index: int) -> float | None:
    v = float(a[(0,) + index])
    return None if math.isnan(v) else v


def _comparison(
    t, adjusted: np.ndarray, i: int, fam: str, weight: float, seeds: list[int], eq_adjusted=None, eq_weight=0.0
) -> Comparison:
    """Slot ``i`` of the :class:`~harness.results.stats.Paired` ``t`` (board 0) as a :class:`Comparison`."""
    low, high, n = _value(t.low, i), _value(t.high, i), int(t.n[0, i])
    p = _value(t.p, i)
    no_test = "" if p is not None else f"{n} paired seed{'s' * (n != 1)}" if n < 2 else "identical per-seed differences"
    in_family = weight > 0
    return Comparison(
        diff=_value(t.diff, i),
        ci=(low, high) if low is not None and high is not None else None,
        n_pairs=n,
        p_value=p,
        p_adjusted=_value(adjusted, i) if in_family else None,
        family=fam if in_family else "",
        weight=float(weight),
        no_test=no_test,
        seeds=tuple(seeds),
        p_equivalent=_value(t.p_equivalent, i) if eq_adjusted is not None else None,
        p_equivalent_adjusted=_value(eq_adjusted, i) if eq_adjusted is not None and eq_weight > 0 else None,
        weight_equivalent=float(eq_weight),
    )


def _tested(
    c: family.Claims,
    members: list[Standing],
    i: int,
    ranked: np.ndarray,
    ref: int | None,
    seeds: list[int],
    protocol_seeds: int,
) -> Standing:
    """Member ``i`` with what the family found about it (nothing claimed unless it is ranked; no
    probability of improvement from one run each)."""
    e, E = members[i], len(members)
    w = c.weights[0]
    update: dict[str, object] = {}
    if ranked[i]:
        low, high = _value(c.score_ci[..., 0], i), _value(c.score_ci[..., 1], i)
        update.update(
            score=_value(c.score, i),
            rank=int(c.rank[0, i]),
            rank_range=(int(c.rank_range[0, i, 0]), int(c.rank_range[0, i, 1])),
            score_ci=(low, high) if low is not None and high is not None else None,
            above=tuple(members[j].label for j in range(E) if c.above[0, i, j]),
            improvement=_value(c.improvement, i) if protocol_seeds >= 2 else None,
        )
    mine = c.seed_score[0, i]
    if ref is not None and i != ref and not math.isnan(float(c.vs_ref.diff[0, i])):
        vs = _comparison(c.vs_ref, c.vs_ref_adjusted, i, "primary", w[i], _paired(seeds, mine, c.seed_score[0, ref]))
        if not (ranked[i] and ranked[ref]):  # descriptive only: the difference and its interval, no claim
            why = "not ranked" if not ranked[i] else f"{members[ref].label} not ranked"
            vs = dataclasses.replace(vs, p_value=None, no_test=why)
        update["vs_ref"] = vs
    code = int(c.tuned_label[0, i])
    if code:
        both = _paired(seeds, mine, c.comparator[0])
        update["vs_tuned"] = _comparison(
            c.vs_tuned, c.vs_tuned_adjusted, i, "primary", w[E + i], both, c.equivalent_adjusted, w[2 * E + i]
        )
        update["tuned_label"] = family.LABELS[code]
    return dataclasses.replace(e, **update)  # type: ignore[arg-type]


def _paired(seeds: list[int], a: np.ndarray, b: np.ndarray) -> list[int]:
    """The seeds on which both per-seed score rows have a value."""
    return [s for s, x, y in zip(seeds, a, b) if not (math.isnan(x) or math.isnan(y))]


def _tuned_line(
    c: family.Claims, members: list[Standing], archs: list[str], seeds: list[int], protocol: np.ndarray
) -> Standing | None:
    """The tuned static weight as a line: on each protocol seed, the accuracies of the weight chosen on
    the other seeds (``picked``: the weights, seed by seed)."""
    choice = c.choice[0]
    used = [k for k, s in enumerate(seeds) if protocol[k] and choice[k] >= 0]
    if not used:
        return None
    per_arch: dict[str, ArchStats] = {}
    for arch in archs:
        values = {seeds[k]: members[choice[k]].archs[arch].seeds[seeds[k]] for k in used}
        per_arch[arch] = arch_stats(values, 0)
    weights = "/".join(f"{SWEEP[members[choice[k]].submission]:g}" for k in used)
    settings = members[0].settings
    return Standing(
        label=TUNED_LABEL + ("" if settings == DEFAULT_SETTINGS else f" [{settings}]"),
        kind="control",
        submission="",
        sha256="",
        archs=per_arch,
        score=score_of(per_arch),
        settings=settings,
        picked={arch: f"w: {weights}" for arch in archs},
    )


def _ordered(members: list[Standing]) -> list[Standing]:
    """Ranked entries by rank, then the incomplete current versions by what they have: the
    architectures with ok runs (most first), then the geometric mean of those architectures' means
    (best first); then the versions the board does not rank (never above their current one)."""

    def have(e: Standing) -> tuple[int, float, str]:
        means = [s.mean for s in e.archs.values() if s.mean is not None and s.mean > 0]
        return (-len(means), -(geometric_mean(means) if means else 0.0), e.label)

    ranked = sorted((e for e in members if e.rank is not None), key=lambda e: (e.rank or 0, e.label))
    waiting = sorted((e for e in members if e.rank is None and e.current), key=have)
    return ranked + waiting + sorted((e for e in members if not e.current), key=lambda e: (e.label, e.version))
