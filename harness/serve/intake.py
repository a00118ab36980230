"""Accepting an upload: the quota, the entry's name and owner, the command line's checks, then the
file stored privately and the submission queued. A file refused here is never stored and never
reaches a worker.

The order is the command line's (name rule and reserved names, then size and static check), with the
served board's own rule between them: an entry name belongs to the participant who first submitted
it (ignoring letter case), and a name the leaderboard already holds from outside the server (an
operator's ``harness evaluate``) belongs to nobody who submits here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from harness.errors import SubmissionRejected
from harness.serve import pipeline
from harness.serve.db import Database, new_id
from harness.serve.settings import ServeSettings


@dataclass
class Refused(Exception):
    """An upload refused: the HTTP status, the message and any headers (``Retry-After``)."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (0700), made if missing."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """``data`` to ``path`` readable by its owner alone (0600), renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


FOLDERS = ("uploads", "entries", "logs", "outcomes", "staging")


def prepare_files(settings: ServeSettings) -> None:
    """The server's private directory and its folders, each 0700."""
    private_dir(settings.files)
    for name in FOLDERS:
        private_dir(settings.files / name)


def upload_path(settings: ServeSettings, sid: str) -> Path:
    return settings.files / "uploads" / f"{sid}.py"


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_quota(db: Database, settings: ServeSettings, participant: str, now: float) -> None:
    """Raise :class:`Refused` (429) when ``participant`` has used their quota; the message and the
    ``Retry-After`` header say when the next slot opens."""
    quota = settings.quota
    if quota is None:
        return
    recent = db.accepted_since(participant, now - quota.seconds)
    if len(recent) < quota.count:
        return
    opens = recent[len(recent) - quota.count] + quota.seconds
    wait = max(1, int(opens - now + 0.999))
    raise Refused(
        429,
        f"quota: {quota.text} submissions per participant, all used; the next slot opens at {_when(opens)} "
        f"(in {wait // 3600}h {wait % 3600 // 60:02d}m {wait % 60:02d}s)",
        {"Retry-After": str(wait)},
        {"retry_after": wait, "next_slot_at": _when(opens)},
    )


def accept(
    db: Database, settings: ServeSettings, participant: str, filename: str, name: str | None, data: bytes
) -> tuple[str, str, str]:
    """Check and queue one upload: ``(submission id, entry, sha256)``. Raises :class:`Refused`."""
    now = time.time()
    check_quota(db, settings, participant, now)
    lb = settings.leaderboard or pipeline.default_path(settings.profile)
    try:
        entry = pipeline.entry_name(filename, name or None, pipeline.reserved_names(lb))
    except SubmissionRejected as e:
        raise Refused(400, str(e)) from None
    owner = db.owner_of(entry)
    outside = {e.casefold() for e in pipeline.leaderboard_entries(lb)}
    if (owner is not None and owner != participant) or (owner is None and entry.casefold() in outside):
        raise Refused(
            400,
            f"{filename}: the entry name {entry} belongs to another participant; an entry belongs to whoever "
            f"first submitted it. Give your file another name (e.g. --name {participant}_{entry})",
        )
    staging = private_dir(settings.files / "staging")
    try:
        sha = pipeline.check_upload(entry, data, staging)
    except SubmissionRejected as e:
        raise Refused(400, str(e)) from None
    sid = new_id()
    upload = upload_path(settings, sid)
    write_private(upload, data)  # before it is queued: a queued submission always has its file
    if not db.add_submission(sid, participant, entry, sha):  # claimed by another participant meanwhile
        upload.unlink(missing_ok=True)
        raise Refused(400, f"{filename}: the entry name {entry} belongs to another participant")
    return sid, entry, sha
