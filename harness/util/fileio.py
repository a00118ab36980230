"""Writing files so that a crash never leaves half of one: the one atomic writer and the one locked
append of the package."""

from __future__ import annotations

import os
import tempfile
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
