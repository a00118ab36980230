"""The leaderboard's statistics against simulations with known truth (seeded, a few seconds):
the score interval's coverage, rank ranges that never contradict the pairwise tests and hold the
true ranks, comparison groups that keep other settings out of the headline's ranking and Holm
family, and ranking on one architecture (``--arch``) or listing incomplete entries by what they have."""

from __future__ import annotations

import json
import math
import random

import pytest

from harness import aggregate, ranking, report
from harness.aggregate import Standing, arch_stats, score_of
from harness.leaderboard import append_row, read_rows

from helpers import harness, harness_in_terminal, leaderboard_row

SEEDS = (42, 123, 456)
BASE = {"resnet20": 67.0, "resnet56": 71.0, "vgg16bn": 73.5}  # the task's table's levels, roughly


def _noisy(rng, true, seed_effect, sd=0.35):
    """One entry's accuracies: ``true[arch]`` + the seed's effect shared by every entry (the seed fixes the
    initialisation and data order) + the entry's own noise."""
    return {a: {s: true[a] + seed_effect[(a, s)] + rng.gauss(0.0, sd) for s in SEEDS} for a in true}


def _seed_effects(rng, archs, sd=0.25):
    common = {s: rng.gauss(0.0, sd) for s in SEEDS}  # the same data order on every architecture
    return {(a, s): common[s] + rng.gauss(0.0, sd) for a in archs for s in SEEDS}


@pytest.mark.parametrize("archs", [("resnet20", "resnet56"), ("resnet20", "resnet56", "vgg16bn")])
def test_the_score_interval_covers_the_true_score_95_percent_of_the_time(archs):
    rng = random.Random(2026)
    trials, covered = 4000, 0
    for _ in range(trials):
        true = {a: BASE[a] + rng.uniform(-3.0, 3.0) for a in archs}
        accs = _noisy(rng, true, _seed_effects(rng, archs), sd=rng.choice([0.2, 0.35, 0.8]))
        low, high = ranking.score_interval(accs)
        covered += low <= math.exp(sum(math.log(v) for v in true.values()) / len(true)) <= high
    assert 0.93 <= covered / trials <= 0.97, covered / trials


def _board(rng, offsets, archs=("resnet20", "resnet56")):
    """Equal weighting (offset 0) and entries ``offsets[1:]`` points above it on every architecture."""
    effects = _seed_effects(rng, archs)
    out = []
    for k, off in enumerate(offsets):
        name = "equal_weighting.py" if k == 0 else f"e{k:02d}.py"
        per = _noisy(rng, {a: BASE[a] + off for a in archs}, effects)
        stats = {a: arch_stats(per[a], 0) for a in archs}
        out.append(Standing(label=name, kind="baseline" if k == 0 else "submission", submission=name,
                            sha256=name, archs=stats, score=score_of(stats)))
    return out


def test_rank_ranges_never_contradict_a_significant_result_and_hold_the_true_ranks():
    rng = random.Random(7)
    offsets = [0.0] + [rng.uniform(-3.0, 2.0) for _ in range(11)]  # 12 entries spread like the task's table
    true_rank = {("equal_weighting.py" if k == 0 else f"e{k:02d}.py"): 1 + sum(o > off for o in offsets)
                 for k, off in enumerate(offsets)}
    boards, all_held, widths, significant = 150, 0, [], 0
    for _ in range(boards):
        group = {e.label: e for e in aggregate.compare_group(_board(rng, offsets))}
        for e in group.values():
            assert e.rank_range[0] <= e.rank <= e.rank_range[1]
            for other in e.above:  # e is significantly above other: neither range reaches the other's rank
                significant += 1
                assert e.rank_range[1] < group[other].rank and group[other].rank_range[0] > e.rank
                assert e.score > group[other].score
        all_held += all(e.rank_range[0] <= true_rank[n] <= e.rank_range[1] for n, e in group.items())
        widths += [e.rank_range[1] - e.rank_range[0] + 1 for e in group.values()]
    assert significant > boards  # the property was exercised, not vacuous
    assert all_held / boards >= 0.95  # Holm controls the family-wise error, so all true ranks hold together
    assert sum(widths) / len(widths) < 8  # informative: 12 entries, not "1-12"


def test_a_one_point_gap_is_told_apart_as_often_as_the_paired_test_finds_it():
    rng = random.Random(11)
    trials, apart = 300, 0
    for _ in range(trials):
        better, ew = sorted(aggregate.compare_group(_board(rng, [0.0, 1.0])), key=lambda e: e.label != "e01.py")
        disjoint = better.rank_range[1] < ew.rank_range[0] or ew.rank_range[1] < better.rank_range[0]
        assert disjoint == better.pooled.significant  # the range and the test say the same
        apart += disjoint
    assert apart / trials >= 0.85, apart / trials


# ---- comparison groups, --arch and incomplete entries through the real views ------------------------


def _rows(name, accs, *, kind="submission", precision="fp32", topology="shared", archs=("resnet20", "resnet56")):
    return [leaderboard_row(seed=s, acc=accs[a][i], submission=name, kind=kind, submission_sha256=name[0] * 64,
                            profile="full", arch=a, epochs=200, precision=precision, topology=topology,
                            run_id=f"full/{name}-{precision}-{topology}/public/{a}-seed{s}")
            for a in archs for i, s in enumerate(SEEDS) if a in accs and i < len(accs[a])]


EW = {"resnet20": (60.0, 61.0, 62.0), "resnet56": (70.0, 71.5, 71.0)}
SUB = {"resnet20": (61.6, 62.4, 63.7), "resnet56": (71.3, 72.6, 72.4)}


def _write(path, rows):
    for row in rows:
        append_row(path, row)
    return path


def test_other_settings_are_ranked_and_adjusted_in_their_own_group(tmp_path):
    head = _rows("equal_weighting.py", EW, kind="baseline") + _rows("sub.py", SUB)
    alone = report.build(read_rows(_write(tmp_path / "a.csv", head)), "public")
    plain = {a: tuple(v + 3.0 for v in vals) for a, vals in SUB.items()}  # a plain sum on another network
    others = (_rows("plain_sum.py", plain, topology="reuse-coarse") + _rows("sub.py", SUB, precision="bf16")
              + _rows("equal_weighting.py", EW, kind="baseline", precision="bf16"))
    mixed = report.build(read_rows(_write(tmp_path / "b.csv", head + others)), "public")
    sub = {(e.label, e.settings): e for e in mixed.entries}
    # the headline: the task's settings only; plain_sum on the reuse-coarse network does not outrank sub.py
    assert [e.label for e in mixed.section("submission")] == ["sub.py"] and sub[("sub.py", "fp32")].rank == 1
    # the same Holm family, so the same adjusted p-values, as without the other groups
    before = {e.label: e.pooled.p_adjusted for e in alone.entries if e.pooled}
    assert {e.label: e.pooled.p_adjusted for e in mixed.entries if e.pooled and e.settings == "fp32"} == before
    titles = {s.group: s.title for s in mixed.sections() if s.kind == "group"}
    assert set(titles) == {"bf16", "fp32 reuse-coarse"}
    assert "Δ against equal_weighting [bf16]" in titles["bf16"]
    assert "no equal_weighting run with these settings" in titles["fp32 reuse-coarse"]
    assert sub[("plain_sum.py [fp32 reuse-coarse]", "fp32 reuse-coarse")].rank == 1  # first of its own group
    assert sub[("plain_sum.py [fp32 reuse-coarse]", "fp32 reuse-coarse")].pooled is None  # nothing to compare with
    code, out = harness_in_terminal("leaderboard", "--leaderboard", tmp_path / "b.csv", cwd=tmp_path, columns=80)
    assert code == 0 and "Δ against equal_weighting [bf16])" in " ".join(out.split())  # the title, unmangled
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80 and "…" not in out
    md = report.render_markdown(mixed)
    assert md.index("## Submissions") < md.index("## Baselines") < md.index("## Other settings: bf16")


@pytest.mark.slow
def test_one_architecture_ranks_what_is_there_and_incomplete_entries_follow_by_what_they_have(tmp_path):
    only20 = {"resnet20": SUB["resnet20"]}
    rows = (_rows("equal_weighting.py", EW, kind="baseline") + _rows("a_low.py", {"resnet20": (50.0, 51.0, 52.0)})
            + _rows("z_high.py", only20) + _rows("m_two.py", {"resnet20": (55.0, 56.0, 57.0), "resnet56": (60.0,)}))
    lb = _write(tmp_path / "leaderboard.csv", rows)
    whole = json.loads(harness("leaderboard", "--leaderboard", lb, "--format", "json", cwd=tmp_path).stdout)
    unranked = [e["entry"] for e in whole["entries"] if e["rank"] is None]
    # m_two.py has runs on both architectures; then by the geometric mean of what they have, not by name
    assert unranked == ["m_two.py", "z_high.py", "a_low.py"]
    r = harness("leaderboard", "--leaderboard", lb, cwd=tmp_path)
    assert "3 entries are not ranked" in r.stdout and "--arch resnet20" in r.stdout
    r = harness("leaderboard", "--leaderboard", lb, "--arch", "resnet20", "--format", "json", cwd=tmp_path)
    one = json.loads(r.stdout)
    assert one["archs"] == ["resnet20"] and one["ranked_on"] == "resnet20"
    ranks = {e["entry"]: e["rank"] for e in one["entries"]}
    assert ranks == {"z_high.py": 1, "equal_weighting.py": 2, "m_two.py": 3, "a_low.py": 4}
    z = next(e for e in one["entries"] if e["entry"] == "z_high.py")
    assert z["score"] == round(sum(SUB["resnet20"]) / 3, 2)  # its own interval and tests on resnet20 alone
    assert z["score_low"] < z["score"] < z["score_high"] and z["archs"]["resnet20"]["p"] is not None
    assert z["archs"]["resnet20"]["p_holm"] == z["pooled"]["p_holm"]  # one architecture: one test, counted once
    r = harness("leaderboard", "--leaderboard", lb, "--arch", "vgg16bn", cwd=tmp_path)
    assert r.returncode == 2 and "choose one of resnet20, resnet56" in r.stderr
