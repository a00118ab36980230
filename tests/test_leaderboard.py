import multiprocessing as mp

import pandas as pd
import pytest

from harness.leaderboard import HEADER_LINE, LeaderboardError, append_row, read_rows
from harness.protocol import LEADERBOARD_COLUMNS, LeaderboardRow


def make_row(seed=42, status="ok", **kw):
    values = dict(
        finished_at="2026-11-23T10:00:00+00:00", submission="loss.py", submission_sha256="ab" * 32,
        kind="submission", profile="tiny", phase="public", arch="resnet20", seed=seed, epochs=1,
        best_fine_acc=12.5 if status == "ok" else None, best_epoch=0 if status == "ok" else None,
        final_fine_acc=12.5 if status == "ok" else None, best_coarse_acc=30.0 if status == "ok" else None,
        wall_seconds=3.2, device="cpu", precision="fp32", channels_last=True, torch_version="2.13.0",
        harness_version="0.1.0", harness_commit="abc", sandbox="none", run_id=f"tiny/x/public/resnet20-seed{seed}",
        status=status,
    )
    values.update(kw)
    return LeaderboardRow(**values)


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
    assert lines[-1].split(",")[8] == "3"


def _writer(path, start):
    for i in range(10):
        append_row(path, make_row(start + i))


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
