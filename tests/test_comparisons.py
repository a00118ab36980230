"""Every interval and adjusted p-value of the standings against a computation
independent of harness.aggregate: scipy's paired t-test and its confidence interval, and Holm's
step-down procedure run as its definition states; ties, a single paired seed, a missing architecture,
and the CSV's rounding."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from scipy import stats

from harness import aggregate, report
from harness.leaderboard import append_row, read_rows

from helpers import leaderboard_row

SEEDS = (42, 123, 456)
EW = {"resnet20": (60.0, 61.0, 62.0), "resnet56": (70.0, 71.5, 71.0)}
ENTRIES = {
    "a.py": {"resnet20": (61.5, 62.0, 63.6), "resnet56": (71.2, 72.4, 72.5)},
    "b.py": {"resnet20": (57.0, 64.0, 61.0), "resnet56": (69.0, 74.0, 69.0)},
    "c.py": {"resnet20": (60.5, 61.7, 62.1), "resnet56": (70.9, 71.0, 71.8)},
    "tie.py": {"resnet20": (61.5, 62.0, 63.6), "resnet56": (71.2, 72.4, 72.5)},  # a.py's numbers: a tie
    "one_seed.py": {"resnet20": (65.0,), "resnet56": (75.0,)},  # a single paired seed per architecture
    "no_r56.py": {"resnet20": (62.0, 63.0, 64.5)},  # a missing architecture
}


def _rows(name, accs, kind="submission"):
    return [leaderboard_row(seed=seed, acc=acc, submission=name, kind=kind, submission_sha256=name[0] * 64,
                            profile="full", arch=arch, epochs=200, run_id=f"full/{name}/{arch}-{seed}")
            for arch, values in accs.items() for seed, acc in zip(SEEDS, values)]


@pytest.fixture(scope="module")
def rep(tmp_path_factory):
    path = tmp_path_factory.mktemp("cmp") / "lb.csv"
    for row in _rows("equal_weighting.py", EW, "baseline") + [r for n, a in ENTRIES.items() for r in _rows(n, a)]:
        append_row(path, row)
    return report.build(read_rows(path), "public")


def by_label(rep):
    return {e.label: e for e in rep.entries}


def holm_by_definition(p_values, alpha):
    """Holm's procedure at level ``alpha``: sort, reject while p_(k) <= alpha / (m - k + 1), stop at
    the first acceptance. Returns the rejected indices."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = set()
    for k, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - k) * (1 + 1e-12):  # a level that is exactly k p: rounding
            break
        rejected.add(i)
    return rejected


def test_per_architecture_and_pooled_intervals_match_scipy(rep):
    e = by_label(rep)
    for name in ("a.py", "b.py", "c.py"):
        for arch in ("resnet20", "resnet56"):
            s = e[name].archs[arch]
            test = stats.ttest_rel(ENTRIES[name][arch], EW[arch])
            low, high = test.confidence_interval(0.95)
            assert s.ci == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
            assert s.p_value == pytest.approx(test.pvalue, rel=1e-12) and s.n_pairs == 3
        mine = [v for arch in ("resnet20", "resnet56") for v in ENTRIES[name][arch]]
        theirs = [v for arch in ("resnet20", "resnet56") for v in EW[arch]]
        test = stats.ttest_rel(mine, theirs)
        pooled = e[name].pooled
        assert pooled.n_pairs == 6 and pooled.diff == pytest.approx(sum(mine) / 6 - sum(theirs) / 6, rel=1e-12)
        assert pooled.ci == tuple(pytest.approx(x, rel=1e-12) for x in test.confidence_interval(0.95))
        assert pooled.p_value == pytest.approx(test.pvalue, rel=1e-12)


def test_a_single_pair_or_a_missing_architecture(rep):
    e = by_label(rep)
    one = e["one_seed.py"].archs["resnet20"]
    assert (one.diff, one.ci, one.p_value, one.p_adjusted, one.n_pairs) == (pytest.approx(5.0), None, None, None, 1)
    assert e["one_seed.py"].pooled.n_pairs == 2  # one seed on each architecture
    assert e["one_seed.py"].pooled.ci == tuple(pytest.approx(x) for x in
                                                stats.ttest_rel([65.0, 75.0], [60.0, 70.0]).confidence_interval())
    missing = e["no_r56.py"]
    assert missing.archs["resnet56"].diff is None and missing.score is None  # incomplete: not ranked
    test = stats.ttest_rel(ENTRIES["no_r56.py"]["resnet20"], EW["resnet20"])
    assert missing.pooled.n_pairs == 3 and missing.pooled.p_value == pytest.approx(test.pvalue, rel=1e-12)


def test_holm_adjusted_p_values_reproduce_the_step_down_procedure(rep):
    # one family: every entry against equal weighting (per architecture and pooled) and every other pair
    # of complete entries (pooled); a pair with equal weighting is the entry's pooled test, counted once
    tests = [s for e in rep.entries for s in [*e.archs.values(), e.pooled, *e.pairs.values()]
             if s is not None and s.p_value is not None]
    raw = [s.p_value for s in tests]
    ranked = [e for e in rep.entries if e.rank is not None]
    assert sum(len(e.pairs) for e in ranked) == (len(ranked) - 1) * (len(ranked) - 2) // 2  # all pairs but EW's
    assert len(raw) >= 10
    # the adjusted p-value of a test is the smallest level at which the procedure rejects it (levels
    # below 1: an adjusted value capped at 1 means "at no level below 1")
    for level in sorted({p * k for p in raw for k in range(1, len(raw) + 1)} - {1.0}):
        if level > 1.0:
            continue
        rejected = holm_by_definition(raw, level)
        for i, s in enumerate(tests):
            assert (s.p_adjusted <= level + 1e-12) == (i in rejected), (level, s.p_value, s.p_adjusted)
    # and the marker reads the adjusted value only
    for s in tests:
        assert s.significant == (s.p_adjusted < aggregate.ALPHA)
    assert any(s.p_value < aggregate.ALPHA <= s.p_adjusted for s in tests)  # a raw "hit" the family removes


def test_holm_handles_ties_and_untested_slots():
    adjusted = aggregate.holm([0.01, None, 0.01, 0.04, 0.5])
    assert adjusted[1] is None
    assert adjusted[0] == adjusted[2] == pytest.approx(0.04)  # 4 x 0.01, ties share it
    assert adjusted[3] == pytest.approx(0.08) and adjusted[4] == pytest.approx(0.5)


def test_ties_share_a_rank_and_rank_ranges_follow_the_pairwise_tests(rep):
    e = by_label(rep)
    assert e["a.py"].score == e["tie.py"].score and e["a.py"].rank == e["tie.py"].rank
    ranked = [x for x in rep.entries if x.rank is not None]
    for x in ranked:  # the interval: a t-interval over the per-seed scores (geometric mean across architectures)
        per_seed = [stats.gmean([x.archs[a].seeds[seed] for a in ("resnet20", "resnet56")]) for seed in SEEDS]
        low, high = stats.t.interval(0.95, 2, loc=sum(per_seed) / 3, scale=stats.sem(per_seed))
        assert x.score_ci == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    for x in ranked:  # each pairwise test against scipy's, pooled over (architecture, seed)
        for other, t in x.pairs.items():
            mine = [v for a in ("resnet20", "resnet56") for v in x.archs[a].seeds.values()]
            theirs = [v for a in ("resnet20", "resnet56") for v in e[other].archs[a].seeds.values()]
            if mine == theirs:  # a.py and tie.py: no spread to test (scipy: nan)
                assert t.p_value is None and t.no_test == "identical per-seed differences"
                continue
            assert t.p_value == pytest.approx(stats.ttest_rel(mine, theirs).pvalue, rel=1e-9)
    # significantly above: the adjusted pairwise (or, with equal weighting, pooled) p below alpha
    sig_above = {(x.label, o) for x in ranked for o, t in x.pairs.items() if t.significant and t.diff > 0}
    sig_above |= {(o, x.label) for x in ranked for o, t in x.pairs.items() if t.significant and t.diff < 0}
    for x in ranked:
        if x.label != "equal_weighting.py" and x.pooled.significant:
            sig_above.add((x.label, "equal_weighting.py") if x.pooled.diff > 0 else ("equal_weighting.py", x.label))
    assert sig_above, "the fixture should hold at least one significant pair"
    assert {(x.label, o) for x in ranked for o in x.above} == sig_above
    n = len(ranked)
    for x in ranked:
        above_me = sum((o.label, x.label) in sig_above for o in ranked)
        below_me = sum((x.label, o.label) in sig_above for o in ranked)
        assert x.rank_range[0] >= 1 + above_me and x.rank_range[1] <= n - below_me
        assert x.rank_range[0] <= x.rank <= x.rank_range[1]
    for hi, lo in sig_above:  # never reaching the rank of an entry it is significantly above or below
        assert e[hi].rank_range[1] < e[lo].rank and e[lo].rank_range[0] > e[hi].rank


def test_the_csv_has_one_rounded_number_per_column(rep):
    table = pd.read_csv(io.StringIO(report.render_csv(rep)))
    text = report.render_csv(rep)
    assert "00000000" not in text and "99999999" not in text  # no float noise
    a = table[table["entry"] == "a.py"].iloc[0]
    assert a["resnet20_diff"] == round(a["resnet20_diff"], 2) and a["resnet20_p_holm"] == round(a["resnet20_p_holm"], 4)
    header = text.splitlines()[0].split(",")
    for col in ("rank", "rank_best", "rank_worst", "resnet20_n", "pooled_paired"):
        assert table[col].dropna().map(lambda v: float(v).is_integer()).all(), col
        assert "." not in "".join(line.split(",")[header.index(col)] for line in text.splitlines()[1:]), col
    header = text.splitlines()[0].split(",")
    assert {"pooled_diff", "pooled_diff_low", "pooled_diff_high", "pooled_p_holm", "score_low"} <= set(header)
