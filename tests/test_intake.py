"""Hostile intake through the command line: names that would reach a terminal, a CSV cell or a page
are refused before anything runs; odd files are each one file's rejection; one bad file never stops
the batch; whatever a leaderboard holds is shown cleaned in every format."""

from __future__ import annotations

import io
import os

import pandas as pd
import pytest
from helpers import REPO, harness, leaderboard_row

from harness.results import append_row

EXAMPLE = (REPO / "submissions" / "example_loss.py").read_text()
ESC_NAME = "esc_\x1b]0;pwned\x07\x1b]52;c;aGk=\x07\x1b[2K\x1b[31;1mRANK-1-VERIFIED\x1b[0m.py"


@pytest.mark.slow
def test_one_bad_file_never_stops_the_batch(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "good.py").write_text(EXAMPLE)
    (subs / "deep.py").write_text(
        EXAMPLE.replace("return ", "return 0 * (" + "+".join(["fine_loss"] * 500) + ") + ", 1)
    )
    (subs / ("x" * 250 + ".py")).write_text(EXAMPLE)
    (subs / ESC_NAME).write_text(EXAMPLE)
    (subs / "=HYPERLINK(1).py").write_text(EXAMPLE)
    (subs / "a:b.py").write_text(EXAMPLE)
    (subs / "cr\rname.py").write_text(EXAMPLE)
    with open(subs / "huge.py", "wb") as f:  # 1 GiB, sparse: it must not be read
        f.truncate(1 << 30)
    os.mkfifo(subs / "fifo.py")
    (subs / "latin1.py").write_bytes(EXAMPLE.encode() + "# caf\xe9\n".encode("latin-1"))
    files = sorted(subs.iterdir())
    r = harness(
        "evaluate",
        *files,
        "--profile",
        "tiny",
        "--sandbox",
        "none",
        "--leaderboard",
        tmp_path / "lb.csv",
        "--runs-dir",
        tmp_path / "runs",
        cwd=tmp_path,
        timeout=600,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "\x1b" not in out and "\r" not in out.replace("\r\n", "\n")  # no escape sequence reached the output
    rows = pd.read_csv(tmp_path / "lb.csv")
    assert rows["submission"].tolist() == ["good.py"] and rows["status"].tolist() == ["ok"]
    flat = " ".join(out.split())
    assert "deep.py: nested too deeply to be checked" in flat
    assert "(at most 100)" in flat and "U+001B" in flat and "contains '='" in flat and "contains ':'" in flat
    assert "huge.py: 1,073,741,824 bytes; a submission is at most 65,536 bytes" in flat
    assert "fifo.py: not a regular file" in flat and "latin1.py: not UTF-8 text" in flat
    assert flat.count("rejected:") == len(files) - 1


@pytest.mark.slow
def test_a_hostile_name_in_a_leaderboard_is_shown_cleaned(tmp_path):
    lb = tmp_path / "lb.csv"
    hostile = "evil\n# Verified winner <img src=x onerror=alert(1)> [x](http://e)\x1b[31m.py"
    append_row(lb, leaderboard_row(submission=hostile))
    append_row(lb, leaderboard_row(submission='=HYPERLINK("http://e").py', submission_sha256="cd" * 32))
    md = harness("leaderboard", "--leaderboard", lb, "--format", "markdown", cwd=tmp_path).stdout
    assert "<img" not in md and "\x1b" not in md and "[x](http" not in md and "\\[x\\](http://e)" in md
    assert [line for line in md.splitlines() if line.startswith("#")] == [
        "# Leaderboard (tiny, public phase)",
        "## Submissions",
    ]
    assert "&lt;img src=x onerror=alert(1)&gt;" in md
    csv = harness("leaderboard", "--leaderboard", lb, "--format", "csv", cwd=tmp_path).stdout
    entries = pd.read_csv(io.StringIO(csv))["entry"].tolist()
    assert '\'=HYPERLINK("http://e").py' in entries and all(not e.startswith("=") for e in entries)
    table = harness("leaderboard", "--leaderboard", lb, cwd=tmp_path)
    assert table.returncode == 0 and "\x1b" not in table.stdout + table.stderr
    html = harness("leaderboard", "--leaderboard", lb, "--format", "html", cwd=tmp_path).stdout
    assert "<img src=x" not in html and "\x1b" not in html
