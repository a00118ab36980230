"""The leaderboard CSV: append one row per run, under a lock, never rewriting.

Appending takes an exclusive file lock (``<csv>.lock``), checks that the existing header
is exactly this schema's, and writes the row with a single ``write`` on an ``O_APPEND``
descriptor followed by ``fsync``. A file with another header (a foreign CSV, an older
schema) is never touched: :class:`LeaderboardError` says what was found.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd
from filelock import FileLock

from harness.errors import LeaderboardError
from harness.protocol import LEADERBOARD_COLUMNS, SCHEMA_VERSION, LeaderboardRow


def _csv_line(values: list[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


HEADER_LINE = _csv_line(list(LEADERBOARD_COLUMNS))


def _format(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value == value else "nan"
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _check_header(path: Path) -> bool:
    """True if the file exists with content and the right header; False if empty/absent."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    try:
        with open(path, encoding="utf-8", newline="") as f:
            first = f.readline()
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise LeaderboardError(f"{path} is not a harness leaderboard ({e}); it was left unchanged") from None
    if first != HEADER_LINE:
        found = first.strip()[:200]
        raise LeaderboardError(
            f"{path} is not a harness leaderboard of schema version {SCHEMA_VERSION} "
            f"(its first line is {found!r}); it was left unchanged. Use another --leaderboard path, "
            "or move the file away."
        )
    return True


def append_row(path: Path, row: LeaderboardRow) -> None:
    """Append ``row`` to the CSV at ``path`` (created with a header if absent)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = _csv_line([_format(getattr(row, c)) for c in LEADERBOARD_COLUMNS])
    with FileLock(str(path) + ".lock"):
        has_header = _check_header(path)
        if has_header:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a torn last line from a crash: start a fresh line
                    line = "\n" + line
        data = (line if has_header else HEADER_LINE + line).encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise LeaderboardError(f"short write to {path} ({written} of {len(data)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)


def read_rows(path: Path) -> pd.DataFrame:
    """The leaderboard as a DataFrame with the schema's columns (empty if absent); a row
    torn by a crash mid-write is left out."""
    path = Path(path)
    if not _check_header(path):
        return pd.DataFrame(columns=list(LEADERBOARD_COLUMNS))
    df = pd.read_csv(path, dtype={"submission_sha256": str, "harness_commit": str}, on_bad_lines="skip")
    return df[df["status"].isin(["ok", "failed"])].reset_index(drop=True)  # drops a line torn by a crash
