"""Managing results as a user types it. ``harness runs`` lists one submission's
rows; an edited file's older versions are dated and marked superseded; ``harness retire`` hides a
version from every view while its rows stay; ``harness compare`` pairs two entries over seeds,
checked against scipy."""

from __future__ import annotations

import statistics

import pandas as pd
import pytest
from helpers import harness, leaderboard_row
from scipy import stats

from harness.results import append_row

SEEDS = (42, 123, 456)
A = {"resnet20": (61.5, 62.0, 63.6), "resnet56": (71.2, 72.4, 72.5)}
B = {"resnet20": (60.0, 61.0, 62.0), "resnet56": (70.0, 71.5, 71.0)}


def _write(path, name, accs, sha, day, kind="submission", failed=()):
    for arch, values in accs.items():
        for seed, acc in zip(SEEDS, values):
            bad = (arch, seed) in failed
            append_row(
                path,
                leaderboard_row(
                    seed=seed,
                    acc=acc,
                    status="failed" if bad else "ok",
                    submission=name,
                    kind=kind,
                    submission_sha256=sha * 64,
                    profile="full",
                    arch=arch,
                    epochs=200,
                    finished_at=f"2026-11-{day:02d}T10:00:00+00:00",
                    run_id=f"full/{name}-{sha}/public/{arch}-seed{seed}",
                ),
            )


@pytest.fixture
def lb(tmp_path):
    path = tmp_path / "leaderboard.csv"
    _write(path, "equal_weighting.py", B, "e", 20, kind="baseline")
    _write(path, "mine.py", B, "1", 21, failed={("resnet56", 42)})  # the first version, then edited
    _write(path, "mine.py", A, "2", 23)
    return path


@pytest.mark.slow
def test_runs_lists_every_version_and_attempt(lb, tmp_path):
    (tmp_path / "mine.py").write_text("# not the version of any row\n")
    r = harness("runs", "mine.py", "--leaderboard", lb, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "mine.py in " in out and "12 row(s), 2 version(s)" in out
    lines = [line.split() for line in out.splitlines() if line.split()[:1] in (["11111111"], ["22222222"])]
    assert len(lines) == 12 and [x[0] for x in lines] == ["11111111"] * 6 + ["22222222"] * 6  # oldest first
    assert sum("failed" in x for x in lines) == 1
    assert "the file here now (version" in out and "has no row yet: `harness evaluate mine.py` runs it" in out
    r = harness("runs", "nope", "--leaderboard", lb, cwd=tmp_path)
    assert r.returncode == 2 and "no rows of nope.py" in r.stderr and "mine.py" in r.stderr


@pytest.mark.slow
def test_old_versions_are_dated_and_superseded(lb, tmp_path):
    r = harness("leaderboard", "--leaderboard", lb, "--format", "csv", cwd=tmp_path)
    table = pd.read_csv(pd.io.common.StringIO(r.stdout))
    mine = table[table["entry"].str.startswith("mine.py")].set_index("entry")["superseded"].to_dict()
    assert mine == {"mine.py @11111111": True, "mine.py @22222222": False}
    md = harness("leaderboard", "--leaderboard", lb, "--format", "markdown", cwd=tmp_path).stdout
    assert "| mine.py @11111111 (superseded, 2026-11-21) |" in md and "| mine.py @22222222 (2026-11-23) |" in md


@pytest.mark.slow
def test_retire_hides_a_version_and_keeps_its_rows(lb, tmp_path):
    before = lb.read_bytes()
    r = harness("retire", "mine", "--leaderboard", lb, cwd=tmp_path)
    assert r.returncode == 2 and "name one as NAME@SHA" in r.stderr and "mine.py@11111111" in r.stderr
    r = harness("retire", "mine@1111", "--reason", "sign bug", "--leaderboard", lb, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert lb.read_bytes() == before  # append-only: the rows are untouched
    md = harness("leaderboard", "--leaderboard", lb, "--format", "markdown", cwd=tmp_path).stdout
    assert "11111111" not in md.split("retired, not shown")[0] and "| mine.py |" in md
    assert "retired, not shown: mine.py @11111111 (since " in md and "sign bug" in md
    runs = harness("runs", "mine", "--leaderboard", lb, cwd=tmp_path).stdout
    assert "11111111 retired" in runs
    assert harness("retire", "mine@1111", "--restore", "--leaderboard", lb, cwd=tmp_path).returncode == 0
    md = harness("leaderboard", "--leaderboard", lb, "--format", "markdown", cwd=tmp_path).stdout
    assert "mine.py @11111111" in md and "retired, not shown" not in md


@pytest.mark.slow
def test_compare_pairs_two_entries_like_scipy(lb, tmp_path):
    r = harness("compare", "mine@2222", "equal_weighting", "--leaderboard", lb, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {
        line.split()[0]: line.split()
        for line in r.stdout.splitlines()
        if line.split()[:1] in (["resnet20"], ["resnet56"], ["score"])
    }
    for arch in ("resnet20", "resnet56"):
        test = stats.ttest_rel(A[arch], B[arch])
        low, high = test.confidence_interval(0.95)
        diff = statistics.mean(A[arch]) - statistics.mean(B[arch])
        assert rows[arch][3:] == [f"{diff:+.2f}", f"[{low:+.2f},", f"{high:+.2f}]", f"{test.pvalue:.3f}", "3"]
    # per-seed scores: each seed's geometric mean over the architectures, paired by seed
    score = {n: [stats.gmean(pair) for pair in zip(v["resnet20"], v["resnet56"])] for n, v in (("A", A), ("B", B))}
    test = stats.ttest_rel(score["A"], score["B"])
    assert rows["score"][-1] == "3" and rows["score"][-2] == ("<0.001" if test.pvalue < 0.001 else f"{test.pvalue:.3f}")
    assert "p is not adjusted" in " ".join(r.stdout.split())
    r = harness("compare", "mine", "equal_weighting", "--leaderboard", lb, cwd=tmp_path)  # the newest version
    assert r.returncode == 0 and "A = mine.py @22222222 (2026-11-23)" in r.stdout, r.stdout + r.stderr


@pytest.mark.slow  # over ~3 s
def test_one_ranked_line_per_entry_older_versions_listed_below(lb, tmp_path):
    """The older version of mine.py scored higher on resnet20 than equal weighting's and would rank; it
    is listed after the ranked lines, unranked and untested; ``--version`` ranks it instead."""
    import json

    _write(lb, "mine.py", {a: tuple(v + 5 for v in vals) for a, vals in B.items()}, "3", 22)  # better, but older
    data = json.loads(harness("leaderboard", "--leaderboard", lb, "--format", "json", cwd=tmp_path).stdout)
    entries = [
        (e["name"], e["version"], e["rank"], e["current"]) for e in data["entries"] if e["section"] == "submission"
    ]
    assert entries[0] == ("mine.py", "22222222", 1, True)  # the newest version, ranked, first of its section
    old = entries[1:]  # then the older ones, unranked
    assert {e[1] for e in old} == {"11111111", "33333333"} and all(e[2] is None and not e[3] for e in old)
    assert not [t for t in data["tests"] if "33333333" in t["a"] + t["b"]]  # never tested
    picked = json.loads(
        harness("leaderboard", "--leaderboard", lb, "--format", "json", "--version", "mine@3333", cwd=tmp_path).stdout
    )
    ranked = {e["version"]: e["rank"] for e in picked["entries"] if e["name"] == "mine.py"}
    assert ranked == {"33333333": 1, "22222222": None, "11111111": None}
    r = harness("leaderboard", "--leaderboard", lb, "--version", "mine@9999", cwd=tmp_path)
    assert r.returncode == 2 and "mine.py@11111111" in r.stderr and "mine.py@22222222" in r.stderr


def test_compare_before_any_baseline_says_how_to_run_it(tmp_path):
    path = tmp_path / "leaderboard-tiny.csv"
    append_row(path, leaderboard_row(seed=42, submission="mine.py"))
    r = harness("compare", "mine", "equal_weighting", "--leaderboard", path, cwd=tmp_path)
    assert r.returncode == 2 and "harness baselines --only equal_weighting --profile tiny" in r.stderr, r.stderr


def test_the_newest_version_is_the_one_first_run_last(lb, tmp_path):
    """Re-running a seed of the old version later does not make it the newest."""
    _write(lb, "mine.py", {"resnet20": (61.0,)}, "1", 25)
    md = harness("leaderboard", "--leaderboard", lb, "--format", "markdown", cwd=tmp_path).stdout
    assert "| mine.py @11111111 (superseded, 2026-11-21) |" in md and "| mine.py @22222222 (2026-11-23) |" in md


@pytest.mark.slow
def test_retire_is_per_file_version_and_guards_the_reference(lb, tmp_path):
    _write(lb, "copy_of_ew.py", B, "e", 22)  # the same content as equal_weighting.py: the same sha256
    assert harness("retire", "copy_of_ew", "--leaderboard", lb, cwd=tmp_path).returncode == 0
    md = harness("leaderboard", "--leaderboard", lb, "--format", "markdown", cwd=tmp_path).stdout
    assert "| equal_weighting.py |" in md and "copy_of_ew.py |" not in md.split("retired, not shown")[0]
    r = harness("retire", "equal_weighting", "--leaderboard", lb, cwd=tmp_path)
    assert r.returncode == 2 and "the reference every Δ and cost is computed against" in r.stderr
    (tmp_path / "mine.py").write_text("# edited, not evaluated yet\n")
    r = harness("retire", "mine.py", "--leaderboard", lb, cwd=tmp_path)
    assert r.returncode == 2 and "has no row in" in r.stderr and "mine.py@11111111" in r.stderr
    with open(f"{lb}.retired", "ab") as f:
        f.write(b"\xff garbage without a newline")  # a damaged side file: skipped, the next event still counts
    assert harness("retire", "mine@2222", "--leaderboard", lb, cwd=tmp_path).returncode == 0
    md = harness("leaderboard", "--leaderboard", lb, "--format", "markdown", cwd=tmp_path).stdout
    assert "mine.py @22222222 (since " in md.split("retired, not shown")[1]


@pytest.mark.slow  # over ~3 s
def test_retiring_a_version_leaves_a_byte_identical_entry_shown(lb, tmp_path):
    """A version is an entry's: retiring mine.py's marks only mine.py's rows retired, and copy.py (the same
    bytes, another entry) stays in ``harness runs`` and on the board as it was."""
    _write(lb, "copy.py", A, "2", 24)  # byte-identical to mine.py's newest version
    assert harness("retire", "mine@2222", "--leaderboard", lb, cwd=tmp_path).returncode == 0
    mine = harness("runs", "mine", "--leaderboard", lb, cwd=tmp_path)
    assert mine.returncode == 0 and "22222222 retired" in mine.stdout, mine.stderr
    copy = harness("runs", "copy", "--leaderboard", lb, cwd=tmp_path)
    assert copy.returncode == 0 and "22222222" in copy.stdout and "retired" not in copy.stdout, copy.stdout
    md = harness("leaderboard", "--leaderboard", lb, "--format", "markdown", cwd=tmp_path).stdout
    shown, hidden = md.split("retired, not shown")
    assert "| 1 | copy.py |" in shown and "mine.py @22222222" in hidden and "copy.py" not in hidden


def test_retired_versions_are_keyed_by_kind_name_and_sha256(tmp_path):
    from harness.protocol import VersionKey
    from harness.results.retired import append_event, retired, side_path

    lb, sha = tmp_path / "lb.csv", "1" * 64
    append_event(lb, "retire", "submission", "a.py", sha, "bug")
    hidden, mine = retired(lb), VersionKey.of("submission", "a.py", sha)
    assert set(hidden) == {mine} and hidden[mine].reason == "bug"
    assert VersionKey.of("submission", "b.py", sha) not in hidden  # a byte-identical copy: another version
    assert VersionKey.of("baseline", "a.py", sha) not in hidden  # a baseline of the same name: another entry
    append_event(lb, "restore", "submission", "a.py", sha)
    assert retired(lb) == {}
    old = tmp_path / "old.csv"  # an older side file: no kind, so its event is each kind's version of that name
    side_path(old).write_text(f"at,action,submission,submission_sha256,reason\n2026-01-01,retire,c.py,{sha},x\n")
    assert set(retired(old)) == {VersionKey.of(kind, "c.py", sha) for kind in ("submission", "baseline")}
    assert all(r.hides(v) and not r.hides(VersionKey.of(v.entry.kind, "d.py", sha)) for v, r in retired(old).items())
