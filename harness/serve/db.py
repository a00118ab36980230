"""The served board's database (SQLite, standard library): participants, who owns which entry name,
the submissions and the queue.

Every write is one transaction (``BEGIN IMMEDIATE``); the file is in WAL mode with a busy timeout, so
``harness participants`` can add a participant while the server runs. The queue is the
``submissions`` table itself: a server killed at any moment finds its queued submissions still
``queued`` and its running ones ``running``, and :meth:`Database.requeue_interrupted` puts those back
at the front of the queue when it starts again.

Fairness (:meth:`Database.claim_next`): round robin between participants. The next submission is
that of the participant whose latest start is the oldest (never started first), their oldest queued
one; a submission interrupted by a stop of the server goes first. One participant's fifty queued
submissions therefore take turns with another's one. Two submissions of the same entry never run at
once (they share the entry's file).
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError
from harness.serve import tokens

SCHEMA_VERSION = 1
STATUSES = ("queued", "running", "done", "rejected", "failed", "cancelled")
FINISHED = ("done", "rejected", "failed", "cancelled")
PARTICIPANT_RULE = "1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit"
_PARTICIPANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS participants (
    name TEXT PRIMARY KEY,
    folded TEXT NOT NULL UNIQUE,
    key_id TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS entries (
    folded TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    participant TEXT NOT NULL REFERENCES participants(name),
    claimed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    participant TEXT NOT NULL REFERENCES participants(name),
    entry TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    pid INTEGER,
    exit_code INTEGER,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS submissions_status ON submissions(status, seq);
CREATE INDEX IF NOT EXISTS submissions_owner ON submissions(participant, created_at);
"""


@dataclass(frozen=True)
class Participant:
    name: str
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True)
class Submission:
    id: str
    seq: int
    participant: str
    entry: str
    sha256: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    pid: int | None
    exit_code: int | None
    reason: str | None


def new_id() -> str:
    """A submission id: random, so that ids say nothing about other participants' submissions."""
    return secrets.token_hex(8)


def participant_problem(name: str) -> str | None:
    if _PARTICIPANT.fullmatch(name):
        return None
    return f"{name!r} cannot name a participant: a name has {PARTICIPANT_RULE}"


class Database:
    """One SQLite file; each method opens its own short connection (safe from any thread)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # made private before SQLite opens it (its -wal and -shm files take the same permissions):
        # it holds the tokens' digests and every participant's submissions
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        with self._tx() as c:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            found = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if found is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(found[0]) != SCHEMA_VERSION:
                raise UsageError(
                    f"{self.path} is a served-board database of schema version {found[0]}; this harness "
                    f"reads version {SCHEMA_VERSION}: use the harness that wrote it, or another --db"
                )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    # --- participants -------------------------------------------------------------------------

    def add_participant(self, name: str) -> str:
        """Add ``name`` and return its token (shown once; only its digest is stored)."""
        problem = participant_problem(name)
        if problem:
            raise UsageError(problem)
        token, key_id, digest = tokens.new_token()
        with self._tx() as c:
            found = c.execute("SELECT name FROM participants WHERE folded = ?", (name.casefold(),)).fetchone()
            if found:
                raise UsageError(
                    f"a participant {found[0]!r} exists already (names are compared ignoring case); choose "
                    f"another name (a revoked participant's name stays taken: it keeps its entries)"
                )
            c.execute(
                "INSERT INTO participants VALUES (?, ?, ?, ?, ?, NULL)",
                (name, name.casefold(), key_id, digest, time.time()),
            )
        return token

    def participants(self) -> list[Participant]:
        with self._tx() as c:
            rows = c.execute("SELECT name, created_at, revoked_at FROM participants ORDER BY name").fetchall()
        return [Participant(*r) for r in rows]

    def revoke(self, name: str) -> None:
        """Revoke ``name``'s token for good; their entry names stay theirs (nobody else can take them)
        and their queued submissions are cancelled."""
        with self._tx() as c:
            found = c.execute("SELECT name, revoked_at FROM participants WHERE name = ?", (name,)).fetchone()
            if found is None:
                raise UsageError(f"no participant {name!r} in {self.path} (`harness participants list` lists them)")
            if found[1] is None:
                c.execute("UPDATE participants SET revoked_at = ? WHERE name = ?", (time.time(), name))
            c.execute(
                "UPDATE submissions SET status = 'cancelled', finished_at = ?, reason = ? "
                "WHERE participant = ? AND status = 'queued'",
                (time.time(), "the participant's token was revoked", name),
            )

    def authenticate(self, token: str) -> str | None:
        """The participant whose token this is (not revoked), else None."""
        parts = tokens.split(token)
        if parts is None:
            return None
        key_id, secret = parts
        with self._tx() as c:
            row = c.execute(
                "SELECT name, token_sha256, revoked_at FROM participants WHERE key_id = ?", (key_id,)
            ).fetchone()
        if row is None:
            tokens.matches(secret, "0" * 64)  # the same work as a known key id
            return None
        name, stored, revoked = row
        return name if tokens.matches(secret, stored) and revoked is None else None

    # --- entry names --------------------------------------------------------------------------

    def owner_of(self, entry: str) -> str | None:
        """The participant who owns ``entry`` (names compared ignoring case), else None."""
        with self._tx() as c:
            row = c.execute("SELECT participant FROM entries WHERE folded = ?", (entry.casefold(),)).fetchone()
        return row[0] if row else None

    # --- submissions and the queue -----------------------------------------------------------

    def add_submission(self, sid: str, participant: str, entry: str, sha256: str) -> bool:
        """Queue submission ``sid`` (see :func:`new_id`) and claim ``entry`` for ``participant`` if
        nobody owns it; False when another participant owns it (checked and claimed in one transaction)."""
        now = time.time()
        with self._tx() as c:
            row = c.execute("SELECT participant FROM entries WHERE folded = ?", (entry.casefold(),)).fetchone()
            if row is not None and row[0] != participant:
                return False
            if row is None:
                c.execute("INSERT INTO entries VALUES (?, ?, ?, ?)", (entry.casefold(), entry, participant, now))
            seq = c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM submissions").fetchone()[0]
            c.execute(
                "INSERT INTO submissions (id, seq, participant, entry, sha256, status, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                (sid, seq, participant, entry, sha256, now),
            )
        return True

    def submission(self, sid: str) -> Submission | None:
        with self._tx() as c:
            row = c.execute("SELECT * FROM submissions WHERE id = ?", (sid,)).fetchone()
        return Submission(*row) if row else None

    def submissions_of(self, participant: str, limit: int = 200) -> list[Submission]:
        with self._tx() as c:
            rows = c.execute(
                "SELECT * FROM submissions WHERE participant = ? ORDER BY seq DESC LIMIT ?", (participant, limit)
            ).fetchall()
        return [Submission(*r) for r in rows]

    def accepted_since(self, participant: str, since: float) -> list[float]:
        """When ``participant``'s submissions accepted after ``since`` were made, oldest first."""
        with self._tx() as c:
            rows = c.execute(
                "SELECT created_at FROM submissions WHERE participant = ? AND created_at > ? ORDER BY created_at",
                (participant, since),
            ).fetchall()
        return [r[0] for r in rows]

    def queue_position(self, sid: str) -> int | None:
        """How many queued submissions were queued before this one (None unless it is queued)."""
        with self._tx() as c:
            row = c.execute("SELECT seq, status FROM submissions WHERE id = ?", (sid,)).fetchone()
            if row is None or row[1] != "queued":
                return None
            before = "SELECT COUNT(*) FROM submissions WHERE status = 'queued' AND seq < ?"
            return int(c.execute(before, (row[0],)).fetchone()[0])

    def claim_next(self, now: float | None = None) -> Submission | None:
        """Mark the next submission (fair order, see the module's docstring) running and return it;
        None when nothing can start."""
        with self._tx() as c:
            busy = set(c.execute("SELECT participant, entry FROM submissions WHERE status = 'running'").fetchall())
            candidates = c.execute(
                "SELECT s.id, s.participant, s.entry FROM submissions s WHERE s.status = 'queued' ORDER BY "
                "(s.attempts > 0) DESC, "
                "(SELECT MAX(t.started_at) FROM submissions t WHERE t.participant = s.participant) ASC, "
                "s.seq ASC"
            ).fetchall()
            for sid, participant, entry in candidates:
                if (participant, entry) in busy:
                    continue
                c.execute(
                    "UPDATE submissions SET status = 'running', started_at = ?, attempts = attempts + 1, pid = NULL "
                    "WHERE id = ?",
                    (time.time() if now is None else now, sid),
                )
                row = c.execute("SELECT * FROM submissions WHERE id = ?", (sid,)).fetchone()
                return Submission(*row)
        return None

    def set_pid(self, sid: str, pid: int | None) -> None:
        with self._tx() as c:
            c.execute("UPDATE submissions SET pid = ? WHERE id = ?", (pid, sid))

    def finish(self, sid: str, status: str, exit_code: int | None, reason: str | None) -> None:
        if status not in FINISHED:
            raise ValueError(f"not a final status: {status}")
        with self._tx() as c:
            c.execute(
                "UPDATE submissions SET status = ?, exit_code = ?, reason = ?, finished_at = ?, pid = NULL "
                "WHERE id = ? AND status IN ('queued', 'running')",
                (status, exit_code, reason, time.time(), sid),
            )

    def requeue(self, sid: str) -> None:
        """Put a running submission back in the queue (the server stopped while it ran)."""
        with self._tx() as c:
            c.execute(
                "UPDATE submissions SET status = 'queued', pid = NULL WHERE id = ? AND status = 'running'", (sid,)
            )

    def running(self) -> list[Submission]:
        with self._tx() as c:
            rows = c.execute("SELECT * FROM submissions WHERE status = 'running' ORDER BY seq").fetchall()
        return [Submission(*r) for r in rows]

    def cancel(self, sid: str, participant: str) -> str | None:
        """Cancel ``participant``'s submission: a queued one at once. Returns its status before (None
        when it is not theirs)."""
        with self._tx() as c:
            query = "SELECT status FROM submissions WHERE id = ? AND participant = ?"
            row = c.execute(query, (sid, participant)).fetchone()
            if row is None:
                return None
            if row[0] == "queued":
                c.execute(
                    "UPDATE submissions SET status = 'cancelled', finished_at = ?, reason = 'cancelled by its owner' "
                    "WHERE id = ?",
                    (time.time(), sid),
                )
            return row[0]
