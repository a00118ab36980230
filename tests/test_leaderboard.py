import multiprocessing as mp
import os
import signal
import time

import pandas as pd
import pytest
from helpers import leaderboard_row as make_row

from harness.protocol import LEADERBOARD_COLUMNS
from harness.results import HEADER_LINE, LeaderboardError, append_row, read_rows


def test_append_creates_header_and_keeps_rows(tmp_path):
    path = tmp_path / "lb.csv"
    append_row(path, make_row(1))
    append_row(path, make_row(2, status="failed"))
    text = path.read_text()
    assert text.startswith(HEADER_LINE) and text.count("\n") == 3
    df = read_rows(path)
    assert list(df.columns) == list(LEADERBOARD_COLUMNS)
    assert df["seed"].tolist() == [1, 2] and df["status"].tolist() == ["ok", "failed"]
    assert pd.isna(df["best_fine_acc"].iloc[1])


def test_foreign_csv_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "lb.csv"
    path.write_text("name,score\nfoo,1\n")
    with pytest.raises(LeaderboardError, match="left unchanged"):
        append_row(path, make_row())
    assert path.read_text() == "name,score\nfoo,1\n"


def test_torn_last_line_does_not_swallow_the_next_row(tmp_path):
    path = tmp_path / "lb.csv"
    append_row(path, make_row(1))
    with open(path, "a") as f:
        f.write("1,2026-11-23T10:00:00+00:00,loss.py,abab")  # a crash mid-write
    append_row(path, make_row(3))
    lines = path.read_text().splitlines()
    assert lines[-1].split(",")[LEADERBOARD_COLUMNS.index("seed")] == "3"


def _writer(path, start):
    for i in range(10):
        append_row(path, make_row(start + i))


@pytest.mark.slow
def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "lb.csv"
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, 100 * k)) for k in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    df = read_rows(path)
    assert sorted(df["seed"]) == sorted(100 * k + i for k in range(8) for i in range(10))
    assert path.read_text().count(HEADER_LINE) == 1


def test_read_rows_skips_a_torn_line_and_binary_files_are_refused(tmp_path):
    path = tmp_path / "lb.csv"
    append_row(path, make_row(1))
    with open(path, "a") as f:
        f.write("1,2026-11-23T10:00:00+00:00,loss.py,abab\n")
    assert read_rows(path)["seed"].tolist() == [1]
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LeaderboardError, match="left unchanged"):
        append_row(binary, make_row())


def _endless_writer(path):
    seed = 0
    while True:
        append_row(path, make_row(seed))
        seed += 1


def test_a_writer_killed_mid_run_leaves_a_valid_file(tmp_path):
    path = tmp_path / "lb.csv"
    proc = mp.get_context("spawn").Process(target=_endless_writer, args=(path,))
    proc.start()
    deadline = time.monotonic() + 60
    while (not path.exists() or path.read_text().count("\n") < 30) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup, lock held or not
    proc.join(10)
    before = read_rows(path)
    assert len(before) >= 29 and before["seed"].tolist() == list(range(len(before)))
    append_row(path, make_row(10_000))  # the lock is free again and the next row lands whole
    after = read_rows(path)
    assert after["seed"].tolist()[-1] == 10_000 and len(after) == len(before) + 1


def test_a_leaderboard_written_with_windows_line_ends_is_read_and_appended(tmp_path):
    """Rows rewritten with Python's csv module (its default line end is CRLF) are the same leaderboard:
    read, shown and appended to; a foreign header with CRLF is still refused."""
    import csv
    import json

    from helpers import harness

    plain = tmp_path / "plain.csv"
    append_row(plain, make_row(42, acc=61.0, profile="tiny"))
    crlf = tmp_path / "leaderboard-tiny.csv"
    with open(plain, newline="") as src, open(crlf, "w", newline="") as dst:
        csv.writer(dst).writerows(csv.reader(src))  # lineterminator "\r\n"
    assert crlf.read_bytes().count(b"\r\n") == 2
    assert read_rows(crlf)["best_fine_acc"].tolist() == [61.0]
    append_row(crlf, make_row(123, acc=62.0, profile="tiny"))
    assert read_rows(crlf)["seed"].tolist() == [42, 123]
    r = harness("leaderboard", "--leaderboard", crlf, "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["entries"][0]["archs"]["resnet20"]["mean"] == 61.0  # seed 42: the protocol's
    foreign = tmp_path / "foreign.csv"
    foreign.write_bytes(b"name,score\r\nfoo,1\r\n")
    with pytest.raises(LeaderboardError, match="left unchanged"):
        append_row(foreign, make_row(1))
