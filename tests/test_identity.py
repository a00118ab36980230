"""What an entry is and what a run is, through the command line: a copy of another entry's file is
its own entry (never skipped for the other's runs, marked identical to it), baseline names are the
baselines', a file name belongs to one place, and retire decides by kind."""

from __future__ import annotations

import io
import shutil

import pandas as pd
import pytest
from helpers import BASELINES, REPO, harness, leaderboard_row

from harness.results import append_row, read_rows

pytestmark = pytest.mark.slow


def _run(cwd, *args):
    common = ("--profile", "tiny", "--sandbox", "none", "--leaderboard", cwd / "lb.csv", "--runs-dir", cwd / "runs")
    r = harness(*args, *common, cwd=cwd)
    return r, " ".join((r.stdout + r.stderr).split())


def _board(cwd) -> pd.DataFrame:
    r = harness("leaderboard", "--leaderboard", cwd / "lb.csv", "--format", "csv", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return pd.read_csv(io.StringIO(r.stdout)).set_index("entry")


def _copy(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def test_a_copy_of_the_reference_does_not_displace_it(tmp_path):
    copy = _copy(BASELINES / "equal_weighting.py", tmp_path / "subs" / "my_new_method.py")
    r, out = _run(tmp_path, "evaluate", copy)
    assert r.returncode == 0, out
    r, out = _run(tmp_path, "baselines", "--only", "equal_weighting")
    assert r.returncode == 0, out
    assert "nothing to run" not in out and "no baselines" not in out, out  # the baseline trained
    board = _board(tmp_path)
    assert board.loc["equal_weighting.py", "section"] == "baseline"
    assert board.loc["my_new_method.py", "identical_to"] == "baseline equal_weighting.py"
    assert board.loc["my_new_method.py", "resnet20_paired"] == 1  # compared with the reference
    assert pd.isna(board.loc["equal_weighting.py", "identical_to"])  # a baseline is not marked for a copy of it
    md = harness("leaderboard", "--leaderboard", tmp_path / "lb.csv", "--format", "markdown", cwd=tmp_path).stdout
    assert "my_new_method.py (identical to baseline equal_weighting.py)" in md
    rows = read_rows(tmp_path / "lb.csv")
    assert rows[["kind", "submission", "attempt"]].values.tolist() == [
        ["submission", "my_new_method.py", 1],
        ["baseline", "equal_weighting.py", 1],
    ]
    assert len(set(rows["run_id"])) == 2  # two run directories, one per entry


def test_a_copy_evaluated_first_does_not_take_the_credit(tmp_path):
    alice = _copy(REPO / "submissions" / "example_loss.py", tmp_path / "alice.py")
    mallory = _copy(alice, tmp_path / "mallory.py")
    r, out = _run(tmp_path, "evaluate", mallory)
    assert r.returncode == 0, out
    r, out = _run(tmp_path, "evaluate", alice)
    assert r.returncode == 0, out
    assert "nothing to run" not in out and "skipping" not in out, out
    board = _board(tmp_path)
    assert board.loc["alice.py", "identical_to"] == "mallory.py"
    assert board.loc["mallory.py", "identical_to"] == "alice.py"
    runs = harness("runs", alice, "--leaderboard", tmp_path / "lb.csv", cwd=tmp_path).stdout
    assert "alice.py in " in runs and "1 row(s), 1 version(s)" in runs


def test_a_file_name_belongs_to_one_place(tmp_path):
    alice = _copy(REPO / "submissions" / "example_loss.py", tmp_path / "alice" / "loss.py")
    bob = _copy(BASELINES / "uncertainty.py", tmp_path / "bob" / "loss.py")
    r, out = _run(tmp_path, "evaluate", alice)
    assert r.returncode == 0, out
    r, out = _run(tmp_path, "evaluate", bob)
    assert r.returncode == 2, out
    assert "the entry loss.py in" in out and "is the file at alice/loss.py" in out and "--name bob_loss.py" in out
    r = harness("runs", bob, "--leaderboard", tmp_path / "lb.csv", cwd=tmp_path)
    assert r.returncode == 2 and "bob/loss.py is another file" in " ".join(r.stderr.split())
    r, out = _run(tmp_path, "evaluate", bob, "--name", "bob_loss.py")
    assert r.returncode == 0, out
    alice.write_text(alice.read_text() + "\n# edited in place: a new version of the same entry\n")
    r, out = _run(tmp_path, "evaluate", alice)
    assert r.returncode == 0, out
    runs = harness("runs", alice, "--leaderboard", tmp_path / "lb.csv", cwd=tmp_path).stdout
    assert "2 row(s), 2 version(s)" in runs  # alice's two versions, none of bob's
    rows = read_rows(tmp_path / "lb.csv")
    assert rows[["submission", "submission_path"]].values.tolist() == [
        ["loss.py", "alice/loss.py"],
        ["bob_loss.py", "bob/loss.py"],
        ["loss.py", "alice/loss.py"],
    ]
    r, out = _run(tmp_path, "evaluate", alice, bob, "--name", "x.py")
    assert r.returncode == 2 and "--name names one entry" in out


def test_a_baseline_file_is_evaluated_as_a_baseline(tmp_path):
    r, out = _run(tmp_path, "evaluate", BASELINES / "dwa.py")
    assert r.returncode == 2 and "dwa.py is a baseline's name" in out and "harness baselines --only dwa" in out
    r, out = _run(tmp_path, "baselines", "--only", "dwa")
    assert r.returncode == 0, out
    assert "nothing to run" not in out and "no baselines yet" not in out, out
    assert read_rows(tmp_path / "lb.csv")["kind"].tolist() == ["baseline"]


@pytest.mark.parametrize(
    "name", ["equal_weighting.py", "Equal_Weighting.py", "equal_weighting\u200b.py", "equal_weighting\uff0epy"]
)
def test_no_submission_looks_like_a_baseline(tmp_path, name):
    path = _copy(REPO / "submissions" / "example_loss.py", tmp_path / "subs" / name)
    r, out = _run(tmp_path, "evaluate", path)
    assert r.returncode == 2, out
    assert not (tmp_path / "lb.csv").exists() and not (tmp_path / "runs").exists()
    if name.isascii():
        assert "equal_weighting.py is a baseline's name" in out
    else:
        assert (
            "cannot name an entry" in out
            and "\\u" in out
            and ("U+200B ZERO WIDTH SPACE (invisible)" in out or "U+FF0E FULLWIDTH FULL STOP" in out)
        )
    if name != "equal_weighting\u200b.py":  # the way out is the same for every name: shown once, for the invisible one
        return
    r, out = _run(tmp_path, "evaluate", path, "--name", "my_ew.py")
    assert r.returncode == 0, out  # an explicit name is the way out
    assert read_rows(tmp_path / "lb.csv")["submission"].tolist() == ["my_ew.py"]


def test_retire_decides_by_kind(tmp_path):
    lb = tmp_path / "lb.csv"
    for kind, sha, acc in (("baseline", "e", 50.0), ("submission", "f", 40.0)):  # an older board: one name, two kinds
        append_row(
            lb,
            leaderboard_row(
                submission="equal_weighting.py",
                kind=kind,
                submission_sha256=sha * 64,
                acc=acc,
                run_id=f"tiny/{kind}/public/resnet20-seed42",
            ),
        )
    r = harness("retire", "equal_weighting", "--leaderboard", lb, cwd=tmp_path)
    assert r.returncode == 2 and "--kind" in r.stderr
    r = harness("retire", "equal_weighting", "--kind", "baseline", "--leaderboard", lb, cwd=tmp_path)
    assert r.returncode == 2 and "is the reference" in r.stderr
    r = harness("retire", "equal_weighting", "--kind", "submission", "--leaderboard", lb, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    board = _board(tmp_path)
    assert board.loc["equal_weighting.py", "section"] == "baseline" and len(board) == 1


def test_attempts_count_per_entry_and_migrate_renumbers_them(tmp_path):
    lb = tmp_path / "lb.csv"
    a = append_row(lb, leaderboard_row(submission="a.py"))
    b = append_row(lb, leaderboard_row(submission="b.py"))  # the same file content: another entry's first attempt
    again = append_row(lb, leaderboard_row(submission="a.py"))
    assert (a.attempt, b.attempt, again.attempt) == (1, 1, 2)
    v3 = tmp_path / "v3.csv"  # version 3 counted both names' rows as attempts of one run
    from harness.results.store import COLUMNS_BY_VERSION

    cols = COLUMNS_BY_VERSION[3]
    df = pd.read_csv(lb, dtype=str, keep_default_na=False)
    df["schema_version"] = "3"
    df["attempt"] = ["1", "2", "3"]
    df[list(cols)].to_csv(v3, index=False, lineterminator="\n")
    r = harness("migrate", v3, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert read_rows(tmp_path / "v3.v6.csv")["attempt"].tolist() == [1, 1, 2]
