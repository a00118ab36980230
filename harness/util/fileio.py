"""Writing files so that a crash never leaves half of one: the one atomic writer and the one locked
append of the package, the one CSV line and JSON-lines format (and their reader, which survives a line
torn by a crash), and the one sha256 of a file."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from filelock import FileLock


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a fresh temporary file beside ``path``, fsync it, and rename it into place:
    readers see the old file or the new one, never a part; concurrent writers never share a
    temporary file; a failed write leaves no temporary file behind. The file is readable by all
    (0644, as a plain write would leave it); what must stay private lives in a private directory
    (:func:`private_dirs`)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def private_dirs(path: Path) -> Path:
    """Create ``path`` and its missing parents, each new one private (0700: a run's files, copies of
    submissions among them, are nobody else's to read); directories that exist are left as they
    are. Returns ``path``."""
    path = Path(path)
    missing = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    return path


def lock_for(path: Path) -> FileLock:
    """The exclusive lock that guards ``path`` and the files kept beside it (``<path>.lock``)."""
    return FileLock(f"{path}.lock")


def append_text(path: Path, text: str, *, header: str = "") -> None:
    """Append ``text`` (whole lines) to ``path`` with one ``O_APPEND`` write, fsynced; a new or empty
    file starts with ``header``. A last line left without its newline (a crash) is ended first, so
    it never swallows this one. When the write or the fsync fails (a full disk) the file is truncated
    back to its size before, and the ``OSError`` propagates: no partial line is left. The caller
    holds :func:`lock_for` when other writers may append."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        text = header + text
    else:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                text = "\n" + text
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    size = os.fstat(fd).st_size
    try:
        written = 0
        while written < len(data):  # a short write (the disk filling up) is followed by its error
            written += os.write(fd, data[written:])
        os.fsync(fd)
    except OSError:
        os.ftruncate(fd, size)
        raise
    finally:
        os.close(fd)


def sha256_bytes(data: bytes) -> str:
    """The hex sha256 of ``data``: a file version's identity (the bytes as read once)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The hex sha256 of the file at ``path``."""
    return sha256_bytes(Path(path).read_bytes())


def csv_line(values: Iterable[object]) -> str:
    """``values`` as one CSV line (newline-terminated), quoted as the leaderboard and its side files are."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def json_lines(records: Iterable[object]) -> str:
    """``records`` as JSON lines (strict JSON: a NaN or an infinity is a ``ValueError``)."""
    return "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)


def read_json_lines(path: Path) -> list[dict]:
    """The JSON objects of the lines of ``path``, in order (empty when it is absent or unreadable). A
    line that is not one (the last line, torn by a crash mid-write; a line ended by the next append)
    is skipped, and the lines around it kept: each line stands alone."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out
