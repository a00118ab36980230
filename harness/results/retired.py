"""Retired file versions: hidden from every view of a leaderboard without touching its rows.

The leaderboard stays append-only: ``harness retire`` appends an event (``retire`` or ``restore``)
to ``<csv>.retired`` beside it, under the leaderboard's lock, and a version is hidden while its
latest event is ``retire``. Deleting the side file brings every version back.

A version is an entry's (kind and name) file version (sha256): retiring a submission's version never
hides a baseline's, whatever their names. Events written before the kind was recorded (a side file
whose header has no ``kind``) apply to every kind.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError
from harness.util.fileio import append_text, lock_for
from harness.util.provenance import utc_now

FIELDS = ("at", "action", "submission", "submission_sha256", "reason", "kind")  # kind last: older files lack it


@dataclass(frozen=True)
class Retired:
    submission: str
    sha256: str
    at: str
    reason: str
    kind: str = ""  # "" (an older event): every kind

    def hides(self, kind: str, submission: str, sha256: str) -> bool:
        return (submission, sha256) == (self.submission, self.sha256) and self.kind in ("", kind)


def side_path(lb_path: Path) -> Path:
    return Path(f"{lb_path}.retired")


def append_event(lb_path: Path, action: str, kind: str, submission: str, sha256: str, reason: str = "") -> None:
    """Append one ``retire`` or ``restore`` event (one write on an O_APPEND descriptor, fsynced)."""
    if action not in ("retire", "restore"):
        raise ValueError(f"unknown retire event {action!r}")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(
        [utc_now(), action, submission, sha256, " ".join(reason.split()), kind]
    )
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(FIELDS)
    with lock_for(lb_path):
        append_text(side_path(lb_path), buf.getvalue(), header=header.getvalue())


def retired(lb_path: Path) -> dict[tuple[str, str, str], Retired]:
    """``(kind, submission, sha256)`` -> the versions whose latest event is ``retire`` (empty without
    a side file; kind "" for an event of an older file, which applies to every kind). A version is an
    entry's file version: two entries with the same content are two versions. Lines that are not
    events are skipped."""
    path = side_path(lb_path)
    if not path.exists():
        return {}
    latest: dict[tuple[str, str, str], dict[str, str]] = {}
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f, restkey="_rest"):
                kind = row.get("kind") or (row.get("_rest") or [""])[0]  # appended to an older header
                if (
                    row.get("submission_sha256")
                    and row.get("submission")
                    and row.get("action") in ("retire", "restore")
                ):
                    latest[
                        (
                            kind if kind in ("submission", "baseline") else "",
                            row["submission"],
                            row["submission_sha256"],
                        )
                    ] = row
    except csv.Error as e:
        raise UsageError(
            f"{path} is not a list of retire events ({e}); fix or delete it (deleting it shows every version again)"
        ) from None
    return {
        key: Retired(key[1], key[2], r.get("at") or "", r.get("reason") or "", key[0])
        for key, r in latest.items()
        if r["action"] == "retire"
    }
