"""What ``harness serve`` is asked to do: the address, the database and where its private files go,
the evaluation options handed to every ``harness evaluate``, and the limits (quota, upload size,
request rate). Validated on construction; a bad value raises :class:`~harness.errors.UsageError`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import UsageError

DEFAULT_DB = Path("harness-serve.sqlite")
"""The database when neither ``--db`` nor ``--leaderboard`` is given: beside the default leaderboard
(the current directory), so that ``harness participants`` finds the one ``harness serve`` uses."""

_PERIODS = {"minute": 60.0, "hour": 3600.0, "day": 86400.0}


class Rate(BaseModel):
    """``count`` events per ``seconds`` (``5/day``, ``60/minute``)."""

    model_config = ConfigDict(frozen=True)

    count: int = Field(ge=1)
    seconds: float = Field(gt=0)
    text: str

    @classmethod
    def parse(cls, text: str, what: str) -> Rate:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(minute|hour|day)\s*", text)
        if not m or int(m.group(1)) < 1:
            raise UsageError(f"{what} {text!r} is not a rate: write N/minute, N/hour or N/day with N at least 1")
        return cls(count=int(m.group(1)), seconds=_PERIODS[m.group(2)], text=f"{m.group(1)}/{m.group(2)}")


def db_path(db: Path | None, leaderboard: Path | None) -> Path:
    """The database file: ``db``, else ``harness-serve.sqlite`` beside ``leaderboard`` (the current
    directory when no leaderboard is named, where the default leaderboards are)."""
    if db is not None:
        return db
    return (leaderboard.parent if leaderboard else Path(".")) / DEFAULT_DB.name


def files_dir(db: Path) -> Path:
    """The private directory of a database: uploads, entry files, logs and outcomes (0700)."""
    return db.with_name(db.name + ".files")


class ServeSettings(BaseModel):
    """The options of ``harness serve``; paths are made absolute by :meth:`resolved`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    db: Path = DEFAULT_DB
    profile: str = "full"
    phase: Literal["public", "final"] = "public"
    sandbox: str = "auto"
    leaderboard: Path | None = None  # None: the profile's default file
    runs_dir: Path = Path("runs")
    data_dir: Path | None = None
    device: str | None = None
    jobs: int | None = Field(default=None, ge=1)  # runs at once inside one evaluation
    concurrent: int = Field(default=1, ge=1)  # evaluations at once
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    quota: Rate | None = None  # submissions per participant
    rate_limit: Rate = Rate(count=120, seconds=60.0, text="120/minute")  # requests per client
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    forwarded_allow_ips: str | None = None  # trust X-Forwarded-For from these (a reverse proxy)

    def resolved(self, leaderboard: Path) -> ServeSettings:
        """The same settings with every path absolute (children run with other working directories)."""
        update = {
            "db": self.db.resolve(),
            "leaderboard": leaderboard.resolve(),
            "runs_dir": self.runs_dir.resolve(),
            "data_dir": self.data_dir.resolve() if self.data_dir else None,
        }
        return self.model_copy(update=update)

    @property
    def files(self) -> Path:
        return files_dir(self.db)
