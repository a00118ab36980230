"""What the board prints fits and speaks to the run: every line within the width (``COLUMNS`` when
piped, the terminal's on a pseudo-terminal), legends wrapped and only about what the table shows (no
word of tests, spread or rank ranges on a one-seed board, no cost for runs of seconds, no "wider
terminal" where the detail cannot fit), no rank range for a board of one ranked entry."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from helpers import SEEDS, harness, harness_in_terminal, leaderboard_row, write_leaderboard
from rich.console import Console

from harness import report
from harness.results import read_rows

SWEEP = ("equal_weighting.py", "static_coarse_0p3.py", "static_coarse_2.py", "fine_only.py")
OFFSETS = {
    "equal_weighting.py": 0.0,
    "static_coarse_0p3.py": -0.2,
    "static_coarse_2.py": 0.3,
    "fine_only.py": -0.6,
    "pcgrad.py": 0.1,
    "uncertainty_weighting_with_a_long_name_v2.py": 0.8,
    "good.py": 2.5,
    "meh.py": -0.3,
}


def full_board(tmp_path):
    """Three seeds, two architectures, the static-weight sweep and a submission with a long name, runs
    of five minutes (a cost means something), the shipped published rows."""
    rng = np.random.default_rng(4)
    rows = [
        leaderboard_row(
            seed=s,
            acc=round(base + off + rng.normal(0, 0.4), 2),
            submission=name,
            kind="baseline" if name in SWEEP or name == "pcgrad.py" else "submission",
            submission_sha256=f"{i:x}" * 64,
            profile="full",
            arch=arch,
            epochs=200,
            wall_seconds=300.0 * (1.5 if name == "good.py" else 1),
            run_id=f"full/{name}/{arch}-{s}",
        )
        for i, (name, off) in enumerate(OFFSETS.items())
        for arch, base in (("resnet20", 67.0), ("resnet56", 71.0))
        for s in SEEDS
    ]
    return write_leaderboard(tmp_path / "leaderboard.csv", rows, shipped=True)


def tiny_board(tmp_path, names=("equal_weighting.py", "mine.py", "other.py")):
    """The tiny profile: one seed, one architecture, runs of 3 seconds."""
    rows = [
        leaderboard_row(
            seed=42,
            acc=2.0 + i * 0.7,
            submission=n,
            kind="baseline" if n in SWEEP else "submission",
            submission_sha256=n[0] * 64,
            run_id=f"tiny/{n}/resnet20-42",
        )
        for i, n in enumerate(names)
    ]
    return write_leaderboard(tmp_path / "leaderboard-tiny.csv", rows)


def printed(path, width):
    console = Console(file=io.StringIO(), width=width, color_system=None)
    report.render_table(report.build(read_rows(path), "public"), console)
    return console.file.getvalue()


def widest(text):
    return max(len(line.rstrip()) for line in text.splitlines())


@pytest.mark.parametrize("width", [80, 120])
def test_every_line_fits_the_width(tmp_path, width):
    for board in (full_board(tmp_path), tiny_board(tmp_path)):
        out = printed(board, width)
        assert widest(out) <= width and "…" not in out, out


def test_a_one_seed_board_says_nothing_of_tests_spread_ranges_or_cost(tmp_path):
    board = tiny_board(tmp_path)
    for width in (80, 400):  # the compact table and its short legend, the detailed one and its full legend
        out = " ".join(printed(board, width).split())
        assert "one seed (42)" in out
        for absent in (
            "Holm",
            "adjusted",
            "n = 3",
            "mean±std",
            "± ",
            "rank (a-b)",
            "ranks its",
            "cost",
            "P(>EW)",
            "wider terminal",
            "Intervals and p-values",
            "What this board can detect",
        ):
            assert absent not in out, (absent, width, out)
    rep = report.build(read_rows(board), "public")
    assert not rep.tested and all(e.vs_ref is None or e.vs_ref.p_value is None for e in rep.entries)
    assert [report.text.fmt_rank(e, ranges=report.text.show_ranges(rep)) for e in rep.entries] == ["1", "2", "3"]


@pytest.mark.slow  # over ~3 s
def test_a_three_seed_board_says_what_it_tests_and_what_it_can_detect(tmp_path):
    out = " ".join(printed(full_board(tmp_path), 80).split())
    assert "Holm's weighted adjustment" in out and "mean±std over seeds" in out and "cost = training time" in out
    assert "tuned: against the tuned static weight" in out and "a terminal of " in out
    rep = report.build(read_rows(full_board(tmp_path)), "public")
    p = rep.power["fp32"]
    assert f"a true difference from equal_weighting of {p.vs_ref:.2f} points" in out and p.seeds == 3
    wide = " ".join(printed(full_board(tmp_path), 1000).split())
    assert "a terminal of " not in wide and "Intervals and p-values" not in wide  # the detail is on screen


def test_a_single_ranked_entry_has_no_rank_range(tmp_path):
    rows = [
        leaderboard_row(
            seed=s,
            acc=60.0 + s / 100,
            submission="alone.py",
            submission_sha256="a" * 64,
            profile="full",
            arch=arch,
            epochs=200,
            run_id=f"full/alone/{arch}-{s}",
        )
        for arch in ("resnet20", "resnet56")
        for s in SEEDS
    ]
    out = printed(write_leaderboard(tmp_path / "lb.csv", rows), 400)
    line = next(x for x in out.splitlines() if "alone.py" in x)
    assert "(1-" not in line and "rank (a-b)" not in out


@pytest.mark.slow
def test_piped_with_columns_80_and_on_an_80_column_terminal(tmp_path, monkeypatch):
    board = full_board(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    for args in (("leaderboard",), ("compare", "good", "equal_weighting")):
        r = harness(*args, "--leaderboard", board, cwd=tmp_path)
        assert r.returncode == 0 and widest(r.stdout) <= 80, r.stdout
        code, out = harness_in_terminal(*args, "--leaderboard", board, cwd=tmp_path, columns=80)
        assert code == 0 and widest(out) <= 80 and "…" not in out, out
    r = harness("leaderboard", "--leaderboard", tiny_board(tmp_path), cwd=tmp_path)
    assert widest(r.stdout) <= 80 and "Holm" not in r.stdout
    monkeypatch.setenv("COLUMNS", "160")
    data = json.loads(harness("leaderboard", "--leaderboard", board, "--format", "json", cwd=tmp_path).stdout)
    good = next(e for e in data["entries"] if e["name"] == "good.py")
    assert good["version"] == "6" * 8 and good["entry"] == "good.py" and good["cost"] == 1.5


@pytest.mark.slow
def test_extra_seeds_run_and_are_paired_while_the_score_stays_the_protocols(tmp_path):
    """``--seed`` beyond the profile's runs (tiny: seed 42 only); the comparison with equal weighting
    pairs every seed both sides have (42 and 7), the accuracies and the score stay on seed 42. Trains
    four tiny runs without a sandbox (the code is the repository's). (Tiny runs end at chance level,
    so both entries score alike and the paired differences are identical: the tests on extra seeds
    are checked on rows in test_statistics_simulation.py.)"""
    from helpers import REPO

    base = ("--profile", "tiny", "--sandbox", "none", "--seed", "42", "--seed", "7")
    r = harness("baselines", "--only", "equal_weighting", *base, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = harness("evaluate", REPO / "submissions" / "example_loss.py", *base, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = read_rows(tmp_path / "leaderboard-tiny.csv")
    assert sorted(rows["seed"]) == [7, 7, 42, 42]
    data = json.loads(harness("leaderboard", "--profile", "tiny", "--format", "json", cwd=tmp_path).stdout)
    mine = next(e for e in data["entries"] if e["name"] == "example_loss.py")
    r20 = mine["archs"]["resnet20"]
    acc42 = rows[(rows["submission"] == "example_loss.py") & (rows["seed"] == 42)]["best_fine_acc"].item()
    assert r20["n"] == 1 and r20["extra_seeds"] == [7] and r20["mean"] == round(acc42, 2)
    assert mine["score"] == r20["mean"] and mine["rank"] is not None
    vs = mine["vs_equal_weighting"]
    assert vs["seeds"] == [7, 42] and vs["paired"] == 2


def test_a_board_of_extra_seeds_only_is_shown_unranked(tmp_path):
    """Runs of seeds outside the profile's only (tiny's is 42): listed, incomplete, nothing tested."""
    rows = [
        leaderboard_row(
            seed=s,
            acc=2.0 + s + (n == "mine.py"),
            submission=n,
            kind="baseline" if n in SWEEP else "submission",
            submission_sha256=n[0] * 64,
            run_id=f"tiny/{n}/resnet20-{s}",
        )
        for n in ("equal_weighting.py", "mine.py")
        for s in (1, 2)
    ]
    rep = report.build(read_rows(write_leaderboard(tmp_path / "lb.csv", rows)), "public")
    mine = next(e for e in rep.entries if e.submission == "mine.py")
    assert mine.rank is None and mine.score is None and mine.archs["resnet20"].extra == {1: 4.0, 2: 5.0}
    assert mine.vs_ref.n_pairs == 2 and mine.vs_ref.p_value is None and not rep.tested
    assert "incomplete" in printed(tmp_path / "lb.csv", 400)
