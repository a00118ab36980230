"""The ranking rule on rows with failed, retried and missing seeds: a seed counts by its latest
attempt, only complete entries are scored and ranked, and the difference from equal weighting is
taken over paired seeds only. Expected values are computed here from the raw rows (and scipy's
t distribution), not by the aggregation code."""

from __future__ import annotations

import math
import statistics

import pytest
from helpers import SEEDS, leaderboard_row, write_leaderboard
from scipy import stats

from harness import report
from harness.results import read_rows

ARCHS = ("resnet20", "resnet56")
EW = {"resnet20": {42: 60.0, 123: 61.0, 456: 62.0}, "resnet56": {42: 70.0, 123: 71.5, 456: 71.0}}


def rows(name, accs, *, sha, kind="submission", failed=(), when="2026-11-23T10:00:00+00:00"):
    """One row per (arch, seed) in ``accs``; ``failed`` (arch, seed) pairs get a failed row instead."""
    out = []
    for arch, per_seed in accs.items():
        for seed, acc in per_seed.items():
            status = "failed" if (arch, seed) in failed else "ok"
            out.append(
                leaderboard_row(
                    seed=seed,
                    status=status,
                    acc=acc,
                    submission=name,
                    kind=kind,
                    submission_sha256=sha * 64,
                    profile="full",
                    arch=arch,
                    epochs=200,
                    finished_at=when,
                    run_id=f"full/{name}/{arch}-seed{seed}-{when[11:13]}",
                )
            )
    return out


def hand_paired_p(a, b):
    """Two-sided paired t-test from its definition: t = mean(d) / (sd(d) / sqrt(n)), df = n - 1."""
    d = [x - y for x, y in zip(a, b)]
    t = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(len(d)))
    return 2 * stats.t.sf(abs(t), len(d) - 1)


@pytest.fixture
def standings(tmp_path):
    complete = {a: {s: v + 0.5 for s, v in EW[a].items()} for a in ARCHS}
    lucky = {a: {s: 90.0 for s in SEEDS} for a in ARCHS}  # one ok seed per arch, two failed: must not rank
    all_rows = (
        rows("equal_weighting.py", EW, sha="e", kind="baseline")
        + rows("complete.py", complete, sha="c")
        + rows("lucky.py", lucky, sha="l", failed={(a, s) for a in ARCHS for s in (123, 456)})
        # ok at first, then a retry of seed 456 failed: the latest attempt decides
        + rows("regressed.py", complete, sha="r")
        + rows(
            "regressed.py",
            {"resnet20": {456: 99.0}},
            sha="r",
            failed={("resnet20", 456)},
            when="2026-11-23T12:00:00+00:00",
        )
        # failed at first, then ok on a retry: counts as ok
        + rows("recovered.py", complete, sha="v", failed={("resnet56", 123)})
        + rows("recovered.py", {"resnet56": {123: 73.0}}, sha="v", when="2026-11-23T12:00:00+00:00")
        # a complete entry plus a lucky seed outside the protocol: not counted
        + rows("extra.py", complete, sha="x")
        + rows("extra.py", {"resnet20": {7: 99.0}, "resnet56": {7: 99.0}}, sha="x")
        # never ran seed 456 on resnet56
        + rows("partial.py", {"resnet20": complete["resnet20"], "resnet56": {42: 75.0, 123: 76.0}}, sha="p")
    )
    rep = report.build(read_rows(write_leaderboard(tmp_path / "leaderboard.csv", all_rows)), "public")
    return rep, {e.label: e for e in rep.entries}


def test_only_complete_entries_are_scored_and_ranked(standings):
    rep, by = standings
    assert rep.seeds == SEEDS
    ranked = sorted((e.rank, e.label) for e in rep.entries if e.rank is not None)
    assert [label for _, label in ranked] == ["recovered.py", "complete.py", "extra.py", "equal_weighting.py"]
    assert by["extra.py"].score == by["complete.py"].score and by["extra.py"].rank == by["complete.py"].rank
    assert 7 not in by["extra.py"].archs["resnet20"].seeds
    for name in ("lucky.py", "regressed.py", "partial.py"):
        assert by[name].score is None and by[name].rank is None, name
    # the complete entry's score from the raw numbers
    want = math.sqrt(
        statistics.mean([v + 0.5 for v in EW["resnet20"].values()])
        * statistics.mean([v + 0.5 for v in EW["resnet56"].values()])
    )
    assert by["complete.py"].score == pytest.approx(want, rel=1e-12)


def test_a_seed_counts_by_its_latest_attempt(standings):
    _, by = standings
    lucky = by["lucky.py"].archs["resnet20"]
    assert (lucky.n, lucky.failed_seeds, lucky.missing) == (1, (123, 456), ())
    regressed = by["regressed.py"].archs["resnet20"]
    assert regressed.failed_seeds == (456,) and 456 not in regressed.seeds  # the earlier ok run does not count
    assert regressed.retried == (456,) and report.fmt_stats(regressed).endswith("(n=2; failed 456; retried 456)")
    assert by["recovered.py"].archs["resnet56"].retried == (123,) and lucky.retried == ()
    recovered = by["recovered.py"].archs["resnet56"]
    assert recovered.failed_seeds == () and recovered.seeds[123] == 73.0
    partial = by["partial.py"].archs["resnet56"]
    assert (partial.n, partial.missing, partial.failed_seeds) == (2, (456,), ())
    assert report.fmt_stats(lucky).endswith("(n=1; failed 123/456)")
    assert report.fmt_stats(partial).endswith("(n=2; missing 456)")
    assert by["partial.py"].archs["resnet20"].complete


def test_difference_from_equal_weighting_uses_paired_seeds_only(standings):
    _, by = standings
    partial = by["partial.py"].archs["resnet56"]
    # paired over 42 and 123: (75 - 70 + 76 - 71.5) / 2 = 4.75; a difference of the means of all
    # seeds (75.5 - 70.83) would be 4.67
    assert partial.diff == pytest.approx(4.75, rel=1e-12) and partial.n_pairs == 2
    assert partial.p_value == pytest.approx(hand_paired_p([75.0, 76.0], [70.0, 71.5]), rel=1e-9)
    recovered = by["recovered.py"].archs["resnet56"]
    want = [73.0 if s == 123 else EW["resnet56"][s] + 0.5 for s in SEEDS]
    assert recovered.diff == pytest.approx(statistics.mean(w - EW["resnet56"][s] for w, s in zip(want, SEEDS)))
    assert recovered.p_value == pytest.approx(hand_paired_p(want, [EW["resnet56"][s] for s in SEEDS]), rel=1e-9)
    lucky = by["lucky.py"].archs["resnet20"]
    assert (lucky.diff, lucky.n_pairs, lucky.p_value) == (pytest.approx(30.0), 1, None)


def test_the_views_say_what_is_missing(standings, tmp_path):
    rep, _ = standings
    md = report.render_markdown(rep)
    assert "failed 123/456" in md and "missing 456" in md and "incomplete" in md
    assert "mean over paired seeds" in md
