"""The leaderboard: its CSV file (:mod:`~harness.results.store`) and how finished runs become
its rows (:mod:`~harness.results.record`)."""

from harness.results.store import (
    COLUMNS_BY_VERSION,
    HEADER_LINE,
    MIGRATIONS,
    LeaderboardError,
    append_row,
    default_path,
    find_default,
    migrate,
    read_rows,
)

__all__ = [
    "COLUMNS_BY_VERSION",
    "HEADER_LINE",
    "MIGRATIONS",
    "LeaderboardError",
    "append_row",
    "default_path",
    "find_default",
    "migrate",
    "read_rows",
]
