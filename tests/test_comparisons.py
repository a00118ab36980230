"""Every interval and adjusted p-value of the standings against a computation
independent of harness.results.aggregate and harness.results.family: scipy's paired t-test and its confidence
interval on per-seed scores (scipy's geometric mean), Holm's weighted step-down procedure run as its
definition states on the exported tests, the leave-one-seed-out tuned static weight and its
equivalence test rebuilt from the rows, rliable's probability of improvement from scipy's
Mann-Whitney U; ties, a single paired seed, a missing architecture, incomplete entries, and the
exports' precision."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from helpers import leaderboard_row
from scipy import stats

from harness import report
from harness.results import aggregate, append_row, read_rows

SEEDS = (42, 123, 456)
EW = {"resnet20": (60.0, 61.0, 62.0), "resnet56": (70.0, 71.5, 71.0)}
ENTRIES = {
    "a.py": {"resnet20": (61.5, 62.0, 63.6), "resnet56": (71.2, 72.4, 72.5)},
    "b.py": {"resnet20": (57.0, 64.0, 61.0), "resnet56": (69.0, 74.0, 69.0)},
    "c.py": {"resnet20": (60.5, 61.7, 62.1), "resnet56": (70.9, 71.0, 71.8)},
    "tie.py": {"resnet20": (61.5, 62.0, 63.6), "resnet56": (71.2, 72.4, 72.5)},  # a.py's numbers: a tie
    "strong.py": {"resnet20": (63.0, 64.1, 64.95), "resnet56": (73.0, 74.6, 73.95)},  # +3 on every seed
    "one_seed.py": {"resnet20": (65.0,), "resnet56": (75.0,)},  # a single paired seed per architecture
    "no_r56.py": {"resnet20": (62.0, 63.0, 64.5)},  # a missing architecture
}


def _rows(name, accs, kind="submission"):
    return [
        leaderboard_row(
            seed=seed,
            acc=acc,
            submission=name,
            kind=kind,
            submission_sha256=name[0] * 64,
            profile="full",
            arch=arch,
            epochs=200,
            run_id=f"full/{name}/{arch}-{seed}",
        )
        for arch, values in accs.items()
        for seed, acc in zip(SEEDS, values)
    ]


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


def per_seed(accs):
    """seed -> the geometric mean over the architectures (scipy), for the seeds every architecture has."""
    n = min(len(v) for v in accs.values())
    return [stats.gmean([accs[a][i] for a in ("resnet20", "resnet56")]) for i in range(n)]


def test_per_architecture_and_per_seed_score_intervals_match_scipy(rep):
    e = by_label(rep)
    for name in ("a.py", "b.py", "c.py"):
        for arch in ("resnet20", "resnet56"):  # descriptive, unadjusted: still scipy's numbers
            s = e[name].archs[arch]
            test = stats.ttest_rel(ENTRIES[name][arch], EW[arch])
            low, high = test.confidence_interval(0.95)
            assert s.ci == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
            assert s.p_value == pytest.approx(test.pvalue, rel=1e-12) and s.n_pairs == 3
        # the test the board claims on: paired over seeds, each seed's geometric mean over the architectures
        test = stats.ttest_rel(per_seed(ENTRIES[name]), per_seed(EW))
        vs = e[name].vs_ref
        assert vs.n_pairs == 3 and vs.seeds == SEEDS and vs.family == "primary"
        assert vs.diff == pytest.approx(sum(per_seed(ENTRIES[name])) / 3 - sum(per_seed(EW)) / 3, rel=1e-12)
        assert vs.ci == tuple(pytest.approx(x, rel=1e-12) for x in test.confidence_interval(0.95))
        assert vs.p_value == pytest.approx(test.pvalue, rel=1e-12)


def test_a_single_pair_or_a_missing_architecture_is_incomplete_and_claims_nothing(rep):
    e = by_label(rep)
    one = e["one_seed.py"].archs["resnet20"]
    assert (one.diff, one.ci, one.p_value, one.n_pairs) == (pytest.approx(5.0), None, None, 1)
    # one seed on each architecture: not ranked, so its score comparison is descriptive (no test, no claim)
    vs = e["one_seed.py"].vs_ref
    assert vs.n_pairs == 1 and vs.p_value is None and vs.p_adjusted is None and not vs.significant
    assert e["one_seed.py"].rank is None and e["one_seed.py"].above == () and e["one_seed.py"].tuned_label == ""
    missing = e["no_r56.py"]
    assert missing.archs["resnet56"].diff is None and missing.score is None  # incomplete: not ranked
    test = stats.ttest_rel(ENTRIES["no_r56.py"]["resnet20"], EW["resnet20"])
    assert missing.archs["resnet20"].p_value == pytest.approx(test.pvalue, rel=1e-12)  # descriptive
    assert missing.vs_ref is None  # no seed with both architectures: no per-seed score to compare


def weighted_holm_by_definition(tests, alpha):
    """Holm's weighted step-down (Holm 1979) at ``alpha``: order by p / w; reject while p_(j) <=
    alpha w_(j) / (the weights not yet rejected), stop at the first acceptance. Returns rejected indices."""
    order = sorted(range(len(tests)), key=lambda i: tests[i]["p"] / tests[i]["weight"])
    remaining = sum(t["weight"] for t in tests)
    rejected = set()
    for i in order:
        if tests[i]["p"] > alpha * tests[i]["weight"] / remaining * (1 + 1e-12):
            break
        rejected.add(i)
        remaining -= tests[i]["weight"]
    return rejected


def _check_holm(tests):
    """Every exported adjusted p-value is the smallest level at which the procedure rejects the test."""
    assert abs(sum(t["weight"] for t in tests) - 1.0) < 1e-12  # the family's weights spend all of alpha
    levels = sorted({t["p"] / t["weight"] * w for t in tests for w in (*{u["weight"] for u in tests}, 1.0)})
    for level in [x for x in levels if x < 1.0] + [0.05]:
        rejected = weighted_holm_by_definition(tests, level)
        for i, t in enumerate(tests):
            assert (t["p_adjusted"] <= level * (1 + 1e-9)) == (i in rejected), (level, t)
    for t in tests:  # the claim reads the adjusted value only
        assert t["claim"] == (t["p_adjusted"] < aggregate.ALPHA)


def test_holm_rebuilt_from_the_exported_tests(rep):
    """The tests' CSV and JSON carry every test unrounded, with its weight: the adjustment is rebuilt
    from them alone, by the procedure's definition."""
    table = pd.read_csv(io.StringIO(report.render(rep, "tests", None)))
    data = json.loads(report.render_json(rep))["tests"]
    assert len(table) == len(data) and set(table["family"]) == {"primary", "pairwise"}
    assert table["p"].tolist() == [t["p"] for t in data]  # unrounded: the CSV holds the same floats
    _check_holm(data)
    _check_holm(table.to_dict("records"))
    ranked = [e for e in rep.entries if e.rank is not None]
    n = len(ranked)
    # one test per ranked entry against equal weighting, and one per pair of ranked entries without it
    assert sum(t["test"] == "vs equal_weighting" for t in data) == n - 1
    assert sum(t["test"] == "pair" for t in data) == (n - 1) * (n - 2) // 2 - sum(
        e.pairs.get(o) is not None and e.pairs[o].p_value is None for e in ranked for o in e.pairs
    )
    primary = [t for t in data if t["family"] == "primary"]
    assert sum(t["weight"] for t in primary) == pytest.approx(0.8)  # the primary tests' share of alpha
    assert any(t["p"] < aggregate.ALPHA <= t["p_adjusted"] for t in data)  # a raw "hit" the family removes


def test_holm_handles_ties_and_untested_slots():
    adjusted = aggregate.holm([0.01, None, 0.01, 0.04, 0.5])
    assert adjusted[1] is None
    assert adjusted[0] == adjusted[2] == pytest.approx(0.04)  # 4 x 0.01, ties share it
    assert adjusted[3] == pytest.approx(0.08) and adjusted[4] == pytest.approx(0.5)


def test_ties_share_a_rank_and_rank_ranges_follow_their_plain_definition(rep):
    e = by_label(rep)
    assert e["a.py"].score == e["tie.py"].score and e["a.py"].rank == e["tie.py"].rank
    ranked = [x for x in rep.entries if x.rank is not None]
    for x in ranked:  # the interval: a t-interval over the per-seed scores (geometric mean across architectures)
        scores = [stats.gmean([x.archs[a].seeds[seed] for a in ("resnet20", "resnet56")]) for seed in SEEDS]
        low, high = stats.t.interval(0.95, 2, loc=sum(scores) / 3, scale=stats.sem(scores))
        assert x.score_ci == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    for x in ranked:  # each pairwise test against scipy's, on per-seed scores
        for other, t in x.pairs.items():
            mine = [stats.gmean([x.archs[a].seeds[s] for a in ("resnet20", "resnet56")]) for s in SEEDS]
            theirs = [stats.gmean([e[other].archs[a].seeds[s] for a in ("resnet20", "resnet56")]) for s in SEEDS]
            if mine == theirs:  # a.py and tie.py: no spread to test (scipy: nan)
                assert t.p_value is None and t.no_test == "identical per-seed differences"
                continue
            assert t.p_value == pytest.approx(stats.ttest_rel(mine, theirs).pvalue, rel=1e-9)
    # significantly above: the adjusted pairwise (or, with equal weighting, primary) p below alpha
    sig_above = {(x.label, o) for x in ranked for o, t in x.pairs.items() if t.significant and t.diff > 0}
    sig_above |= {(o, x.label) for x in ranked for o, t in x.pairs.items() if t.significant and t.diff < 0}
    for x in ranked:
        if x.label != "equal_weighting.py" and x.vs_ref.significant:
            sig_above.add((x.label, "equal_weighting.py") if x.vs_ref.diff > 0 else ("equal_weighting.py", x.label))
    assert sig_above, "the fixture should hold at least one significant pair"
    assert {(x.label, o) for x in ranked for o in x.above} == sig_above
    n = len(ranked)
    for x in ranked:  # the plain definition, nothing more
        above_me = sum((o.label, x.label) in sig_above for o in ranked)
        below_me = sum((x.label, o.label) in sig_above for o in ranked)
        assert x.rank_range == (1 + above_me, n - below_me)


def test_the_csv_rounds_accuracies_and_keeps_p_values_whole(rep):
    text = report.render_csv(rep)
    table = pd.read_csv(io.StringIO(text))
    data = {r["entry"]: r for r in json.loads(report.render_json(rep))["entries"]}
    a = table[table["entry"] == "a.py"].iloc[0]
    assert a["resnet20_diff"] == round(a["resnet20_diff"], 2) and a["resnet20_mean"] == round(a["resnet20_mean"], 2)
    # p-values as computed, raw and adjusted: the same floats as the JSON's and the standings'
    assert a["ew_p"] == data["a.py"]["vs_equal_weighting"]["p"] == by_label(rep)["a.py"].vs_ref.p_value
    assert a["ew_p_adjusted"] == by_label(rep)["a.py"].vs_ref.p_adjusted and a["ew_p"] != round(a["ew_p"], 6)
    assert a["resnet20_p"] == by_label(rep)["a.py"].archs["resnet20"].p_value  # descriptive, still exported
    header = text.splitlines()[0].split(",")
    for col in ("rank", "rank_best", "rank_worst", "resnet20_n", "ew_paired"):
        assert table[col].dropna().map(lambda v: float(v).is_integer()).all(), col
        assert "." not in "".join(line.split(",")[header.index(col)] for line in text.splitlines()[1:]), col
    assert {"ew_diff", "ew_diff_low", "ew_diff_high", "ew_p_adjusted", "score_low", "name", "version"} <= set(header)
    assert a["name"] == "a.py" and a["version"] == "a" * 8


def test_probability_of_improvement_is_rliables(rep):
    """rliable's P(X > Y): per architecture the Mann-Whitney U over all (run, run) pairs, averaged."""
    e = by_label(rep)
    for name in ("a.py", "b.py", "c.py", "strong.py"):
        want = sum(stats.mannwhitneyu(ENTRIES[name][a], EW[a]).statistic / 9 for a in ("resnet20", "resnet56")) / 2
        assert e[name].improvement == pytest.approx(want, rel=1e-12)
    assert e["equal_weighting.py"].improvement is None and e["one_seed.py"].improvement is None  # not ranked


def test_the_detectable_effect_has_the_stated_power():
    """The smallest difference with 80% power, checked by simulating the paired t-test at that difference."""
    import numpy as np

    from harness.results.stats import detectable

    rng = np.random.default_rng(0)
    for n, level in ((3, 0.05), (3, 0.0013), (10, 0.0013)):
        delta = detectable(n, 1.0, level)
        d = rng.normal(delta, 1.0, size=(40_000, n))
        t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(n))
        assert (np.abs(t) > stats.t.ppf(1 - level / 2, n - 1)).mean() == pytest.approx(0.8, abs=0.01)
    assert detectable(1, 1.0, 0.05) is None and detectable(3, 0.0, 0.05) is None
