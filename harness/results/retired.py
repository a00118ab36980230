"""Retired file versions: hidden from every view of a leaderboard without touching its rows.

The leaderboard stays append-only: ``harness retire`` appends an event (``retire`` or ``restore``)
to ``<csv>.retired`` beside it, under the leaderboard's lock, and a version is hidden while its
latest event is ``retire``. Deleting the side file brings every version back.

A version is a :class:`~harness.protocol.VersionKey`: an entry's (kind and name) file version
(sha256). Retiring one never hides another entry's, a byte-identical copy's or a baseline's of the
same name. Events written before the kind was recorded (a side file whose header has no ``kind``)
apply to the entry of that name of every kind.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from harness.errors import UsageError
from harness.protocol import Kind, VersionKey
from harness.util.fileio import append_text, csv_line, lock_for
from harness.util.provenance import utc_now

KINDS: tuple[str, ...] = get_args(Kind)
FIELDS = ("at", "action", "submission", "submission_sha256", "reason", "kind")  # kind last: older files lack it


@dataclass(frozen=True)
class Retired:
    submission: str
    sha256: str
    at: str
    reason: str
    kind: str = ""  # "" (an older event): every kind

    def hides(self, version: VersionKey) -> bool:
        same = (version.entry.name, version.sha256) == (self.submission, self.sha256)
        return same and self.kind in ("", version.entry.kind)


def side_path(lb_path: Path) -> Path:
    return Path(f"{lb_path}.retired")


def append_event(lb_path: Path, action: str, kind: str, submission: str, sha256: str, reason: str = "") -> None:
    """Append one ``retire`` or ``restore`` event (one write on an O_APPEND descriptor, fsynced)."""
    if action not in ("retire", "restore"):
        raise ValueError(f"unknown retire event {action!r}")
    line = csv_line([utc_now(), action, submission, sha256, " ".join(reason.split()), kind])
    with lock_for(lb_path):
        append_text(side_path(lb_path), line, header=csv_line(FIELDS))


def retired(lb_path: Path) -> dict[VersionKey, Retired]:
    """The versions whose latest event is ``retire``, each with that event (empty without a side
    file). A version is an entry's file version: two entries with the same content are two versions.
    An event of an older file (no kind) is an event of both kinds' version of that name and sha256.
    Lines that are not events are skipped."""
    path = side_path(lb_path)
    if not path.exists():
        return {}
    latest: dict[VersionKey, dict[str, str]] = {}
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f, restkey="_rest"):
                kind = row.get("kind") or (row.get("_rest") or [""])[0]  # appended to an older header
                if (
                    row.get("submission_sha256")
                    and row.get("submission")
                    and row.get("action") in ("retire", "restore")
                ):
                    row["kind"] = kind if kind in KINDS else ""
                    for k in [row["kind"]] if row["kind"] else KINDS:
                        latest[VersionKey.of(k, row["submission"], row["submission_sha256"])] = row
    except csv.Error as e:
        raise UsageError(
            f"{path} is not a list of retire events ({e}); fix or delete it (deleting it shows every version again)"
        ) from None
    return {
        key: Retired(key.entry.name, key.sha256, r.get("at") or "", r.get("reason") or "", r["kind"])
        for key, r in latest.items()
        if r["action"] == "retire"
    }
