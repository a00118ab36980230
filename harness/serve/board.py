"""The board as the server shows it: ``harness leaderboard --format json|html`` of the server's
profile and phase, rendered by a child process and kept until the leaderboard changes.

A render is keyed by the leaderboard's and its retire events' size and modification time; the first
request after a row lands renders again (one render at a time per format, the others wait for it).
Before the first row the board is that of an empty leaderboard. The phase is the server's: in the
public phase the hidden architecture's results stay out of every view, whatever the file holds.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from harness.serve import pipeline
from harness.serve.settings import ServeSettings

RENDER_TIMEOUT_S = 300.0


class BoardError(Exception):
    """The board could not be rendered; the message says why (the command's error)."""


def _stat(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "-"
    return f"{st.st_mtime_ns}:{st.st_size}"


class Board:
    """The rendered board, cached per format."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.path = settings.leaderboard or pipeline.default_path(settings.profile)
        self.cache: dict[str, tuple[str, str]] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    def version(self) -> str:
        """Changes whenever what the board shows may have changed."""
        key = f"{_stat(self.path)}|{_stat(Path(f'{self.path}.retired'))}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    async def get(self, fmt: str) -> tuple[str, str]:
        """``(version, text)`` of the board in ``fmt`` (json or html)."""
        lock = self.locks.setdefault(fmt, asyncio.Lock())
        async with lock:
            version = self.version()
            cached = self.cache.get(fmt)
            if cached and cached[0] == version:
                return cached
            text = await self._render(fmt)
            self.cache[fmt] = (version, text)
            return version, text

    async def _render(self, fmt: str) -> str:
        source = self.path
        if not source.exists():
            source = self.settings.files / "empty-leaderboard.csv"
            pipeline.write_empty_leaderboard(source)
        cmd = pipeline.board_command(self.settings, fmt, source)
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), RENDER_TIMEOUT_S)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise BoardError(f"rendering the board took over {RENDER_TIMEOUT_S:g} s") from None
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip().splitlines()
            raise BoardError(message[-1] if message else f"harness leaderboard exited with {proc.returncode}")
        return out.decode("utf-8")
