"""Retired file versions: hidden from every view of a leaderboard without touching its rows.

The leaderboard stays append-only: ``harness retire`` appends an event (``retire`` or ``restore``)
to ``<csv>.retired`` beside it, under the leaderboard's lock, and a version is hidden while its
latest event is ``retire``. Deleting the side file brings every version back.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from harness.errors import UsageError
from harness.provenance import utc_now

FIELDS = ("at", "action", "submission", "submission_sha256", "reason")


@dataclass(frozen=True)
class Retired:
    submission: str
    sha256: str
    at: str
    reason: str


def side_path(lb_path: Path) -> Path:
    return Path(f"{lb_path}.retired")


def append_event(lb_path: Path, action: str, submission: str, sha256: str, reason: str = "") -> None:
    """Append one ``retire`` or ``restore`` event (one write on an O_APPEND descriptor, fsynced)."""
    assert action in ("retire", "restore")
    buf = io.StringIO()
    path = side_path(lb_path)
    with FileLock(str(lb_path) + ".lock"):
        if not path.exists() or path.stat().st_size == 0:
            csv.writer(buf, lineterminator="\n").writerow(FIELDS)
        else:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a last line without its newline must not swallow this event
                    buf.write("\n")
        csv.writer(buf, lineterminator="\n").writerow([utc_now(), action, submission, sha256, " ".join(reason.split())])
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, buf.getvalue().encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


def retired(lb_path: Path) -> dict[tuple[str, str], Retired]:
    """``(submission, sha256)`` -> the versions whose latest event is ``retire`` (empty without a
    side file). A version is a file name and its content: two files with the same content are two
    versions. Lines that are not events are skipped."""
    path = side_path(lb_path)
    if not path.exists():
        return {}
    latest: dict[tuple[str, str], dict[str, str]] = {}
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f):
                if row.get("submission_sha256") and row.get("submission") and row.get("action") in ("retire",
                                                                                                    "restore"):
                    latest[(row["submission"], row["submission_sha256"])] = row
    except csv.Error as e:
        raise UsageError(f"{path} is not a list of retire events ({e}); fix or delete it (deleting it shows every "
                         "version again)") from None
    return {key: Retired(key[0], key[1], r.get("at") or "", r.get("reason") or "")
            for key, r in latest.items() if r["action"] == "retire"}
