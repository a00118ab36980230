"""The leaderboard CSV file: where it is, its schema versions, and appending one row under a lock,
never rewriting.

Appending takes an exclusive file lock (``<csv>.lock``), checks that the existing header
is exactly this schema's, and writes the row with :func:`harness.util.fileio.append_text` (one
``O_APPEND`` write, fsynced; truncated back on failure, so no partial row is left). A file with
another header (a foreign CSV, an older schema) is never touched: :class:`LeaderboardError` says
what was found and what to do.

Schema changes: every version's columns are kept in ``COLUMNS_BY_VERSION`` and each step
``v -> v + 1`` in ``MIGRATIONS``. ``harness migrate OLD.csv`` writes a new file of the current
version next to the old one (``OLD.v<N>.csv``) and leaves the old file as it was.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from harness.errors import LeaderboardError, UsageError
from harness.protocol import LEADERBOARD_COLUMNS, SCHEMA_VERSION, LeaderboardRow, SeriesKey, key_values
from harness.util.fileio import append_text, csv_line, lock_for, write_atomic

HEADER_LINE = csv_line(LEADERBOARD_COLUMNS)

_V1_COLUMNS = (
    "schema_version",
    "finished_at",
    "submission",
    "submission_sha256",
    "kind",
    "profile",
    "phase",
    "arch",
    "seed",
    "epochs",
    "best_fine_acc",
    "best_epoch",
    "final_fine_acc",
    "best_coarse_acc",
    "wall_seconds",
    "device",
    "precision",
    "channels_last",
    "torch_version",
    "harness_version",
    "harness_commit",
    "sandbox",
    "run_id",
    "status",
)
_V2_COLUMNS = (
    _V1_COLUMNS[: _V1_COLUMNS.index("torch_version")]
    + ("compile", "deterministic")
    + _V1_COLUMNS[_V1_COLUMNS.index("torch_version") :]
)
_V3_COLUMNS = (
    "schema_version",
    "origin",
    "source",
    "finished_at",
    "submission",
    "submission_sha256",
    "kind",
    "profile",
    "phase",
    "topology",
    "arch",
    "seed",
    "attempt",
    "epochs",
    "best_fine_acc",
    "best_epoch",
    "final_fine_acc",
    "best_coarse_acc",
    "wall_seconds",
    "device",
    "precision",
    "channels_last",
    "compile",
    "deterministic",
    "torch_version",
    "harness_version",
    "harness_commit",
    "sandbox",
    "run_id",
    "status",
)
_V3_RUN = (
    "submission_sha256",
    "profile",
    "phase",
    "topology",
    "arch",
    "seed",
    "precision",
    "compile",
    "deterministic",
)  # what version 3 counted attempts by (the file's content only)
_V4_COLUMNS = _V3_COLUMNS[:6] + ("submission_path",) + _V3_COLUMNS[6:]
_V4_RUN: tuple[str, ...] = ("kind", "submission", "submission_sha256", "profile", "phase", "topology")
_V4_RUN += ("precision", "compile", "deterministic", "arch", "seed")  # what versions 4 and 5 counted attempts by
_V5_COLUMNS = _V4_COLUMNS[:22] + ("float32_math",) + _V4_COLUMNS[22:]
COLUMNS_BY_VERSION: dict[int, tuple[str, ...]] = {
    1: _V1_COLUMNS,
    2: _V2_COLUMNS,
    3: _V3_COLUMNS,
    4: _V4_COLUMNS,
    5: _V5_COLUMNS,
    SCHEMA_VERSION: LEADERBOARD_COLUMNS,
}


def _v1_to_v2(df: pd.DataFrame) -> pd.DataFrame:
    """v2 added ``compile`` and ``deterministic``; version-1 runs had neither option."""
    df = df.copy()
    df["compile"] = "false"
    df["deterministic"] = "false"
    return df


def _v2_to_v3(df: pd.DataFrame) -> pd.DataFrame:
    """v3 added ``origin``, ``source``, ``topology`` and ``attempt``: version-2 rows were all measured
    here on the shared topology; their attempts are numbered in the order the rows were appended."""
    df = df.copy()
    df["origin"] = "measured"
    df["source"] = ""
    df["topology"] = "shared"
    df["attempt"] = (df.groupby(list(_V3_RUN), sort=False).cumcount() + 1).astype(str)
    return df


def _v3_to_v4(df: pd.DataFrame) -> pd.DataFrame:
    """v4 added ``submission_path`` (unknown for older rows: empty) and counts attempts per entry
    (kind and name) as well as per file version: a copy of another entry's file was counted as a
    retry of that entry's runs. Measured rows' attempts are renumbered in the order they were
    appended; published rows keep theirs (none)."""
    df = df.copy()
    df["submission_path"] = ""
    measured = df["origin"] == "measured"
    keys = [df.loc[measured, c].astype(str).str.lower() for c in _V4_RUN]
    df.loc[measured, "attempt"] = (df.loc[measured].groupby(keys, sort=False).cumcount() + 1).astype(str)
    return df


def _v4_to_v5(df: pd.DataFrame) -> pd.DataFrame:
    """v5 added ``float32_math``. Harness versions before it computed float32 in IEEE everywhere (they
    switched CUDA's TF32 convolutions off) except with ``--precision tf32`` on a GPU; published rows
    do not say (empty)."""
    df = df.copy()
    measured = df["origin"] == "measured"
    on_gpu_tf32 = (df["precision"] == "tf32") & df["device"].astype(str).str.startswith("cuda")
    df["float32_math"] = ""
    df.loc[measured, "float32_math"] = "ieee"
    df.loc[measured & on_gpu_tf32, "float32_math"] = "tf32"
    return df


def _v5_to_v6(df: pd.DataFrame) -> pd.DataFrame:
    """v6 added ``protocol_version`` (:data:`harness.protocol.PROTOCOL_VERSION`): measured rows of
    earlier harness versions were trained by protocol version 1; published rows do not say (empty)."""
    df = df.copy()
    df["protocol_version"] = ""
    df.loc[df["origin"] == "measured", "protocol_version"] = "1"
    return df


MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5, 5: _v5_to_v6}
if set(COLUMNS_BY_VERSION) != set(MIGRATIONS) | {SCHEMA_VERSION}:
    raise RuntimeError("every older schema version needs its migration step")


def _header_version(first_line: str) -> int | None:
    if first_line.endswith("\r\n"):
        first_line = first_line[:-2] + "\n"
    for version, columns in COLUMNS_BY_VERSION.items():
        if first_line == csv_line(columns):
            return version
    return None


def _format(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value == value else "nan"
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _check_header(path: Path) -> bool:
    """True if the file exists with content and the right header; False if empty/absent."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    try:
        with open(path, encoding="utf-8", newline="") as f:
            first = f.readline()
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise LeaderboardError(f"{path} is not a harness leaderboard ({e}); it was left unchanged") from None
    if first.endswith("\r\n"):  # written with Windows line ends (Python's csv module's default): the same header
        first = first[:-2] + "\n"
    if first != HEADER_LINE:
        found = first.strip()[:200]
        version = _header_version(first)
        if version is not None:
            raise LeaderboardError(
                f"{path} has leaderboard schema version {version}, this harness writes version "
                f"{SCHEMA_VERSION}; it was left unchanged. Convert a copy with `harness migrate {path}` "
                "(the original is kept) and point --leaderboard at the new file."
            )
        raise LeaderboardError(
            f"{path} is not a harness leaderboard of schema version {SCHEMA_VERSION} "
            f"(its first line is {found!r}); it was left unchanged. Use another --leaderboard path, "
            "or move the file away."
        )
    return True


def _cell(value: object) -> str:
    """A key cell as text, the same whether it was read from the CSV or comes from a model."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = str(_format(value))
    return text.lower() if text in ("True", "False") else text


def rows_of(rows: pd.DataFrame, key: SeriesKey) -> pd.DataFrame:
    """The measured rows of ``key``: one run's attempts for a :class:`~harness.protocol.RunKey`, a
    series' rows for a :class:`~harness.protocol.SeriesKey`."""
    rows = rows[rows["origin"] == "measured"]
    same = pd.Series(True, index=rows.index)
    for column, value in key_values(key).items():
        same &= rows[column].map(_cell) == _cell(value)
    return rows[same]


def latest_attempts(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The latest attempt (the row finished last; of rows finished at once, the one appended last) of
    each group of ``runs`` by the columns ``by``: the one rule by which a run counts, for the skip rule
    and the standings alike."""
    return runs.sort_values("finished_at", kind="stable").groupby(by, sort=False).tail(1)


def _attempt(path: Path, row: LeaderboardRow) -> int:
    """1 + the rows of the same run already in the file (read under the append lock)."""
    return 1 + len(rows_of(read_rows(path), row.key))


def append_row(path: Path, row: LeaderboardRow) -> LeaderboardRow:
    """Append ``row`` to the CSV at ``path`` (created with a header if absent); a measured row gets
    its ``attempt`` number here, under the lock. Returns the row as written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock_for(path):
        has_header = _check_header(path)
        if row.origin == "measured":
            row = row.model_copy(update={"attempt": _attempt(path, row) if has_header else 1})
        try:
            append_text(path, csv_line([_format(getattr(row, c)) for c in LEADERBOARD_COLUMNS]), header=HEADER_LINE)
        except OSError as e:
            raise LeaderboardError(f"could not append to {path} ({e}); the file is unchanged") from e
    return row


def _older_version(path: Path) -> int | None:
    """The schema version of a leaderboard of an older version; None for any other file."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            version = _header_version(f.readline())
    except (OSError, UnicodeDecodeError):
        return None
    return version if version != SCHEMA_VERSION else None


def _migrated(path: Path, version: int) -> pd.DataFrame:
    """The rows of ``path`` (schema ``version``) as cells of the current schema; torn rows dropped."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines="skip")
    df = df[df["status"].isin(["ok", "failed"])]
    while version < SCHEMA_VERSION:
        df = MIGRATIONS[version](df)
        version += 1
    df["schema_version"] = str(SCHEMA_VERSION)
    return df[list(LEADERBOARD_COLUMNS)]


def read_rows(path: Path, *, appending: bool = False) -> pd.DataFrame:
    """The leaderboard as a DataFrame with the schema's columns (empty if absent); a row
    torn by a crash mid-write is left out. A file of an older schema version is migrated as it is
    read (the file is left as it is), unless ``appending``: then it is refused like a foreign one,
    since rows are never appended to it (``harness migrate`` converts a copy)."""
    path = Path(path)
    source: Path | io.StringIO = path
    version = None if appending else _older_version(path)
    if version is not None:
        source = io.StringIO(_migrated(path, version).to_csv(index=False, lineterminator="\n"))
    elif not _check_header(path):
        return pd.DataFrame(columns=list(LEADERBOARD_COLUMNS))
    df = pd.read_csv(
        source,
        dtype={
            "submission": str,
            "submission_sha256": str,
            "harness_commit": str,
            "source": str,
            "submission_path": str,
        },
        on_bad_lines="skip",
    )
    df["source"] = df["source"].fillna("")
    df["submission_path"] = df["submission_path"].fillna("")
    df = df[df["status"].isin(["ok", "failed"])].reset_index(drop=True)  # drops a line torn by a crash
    # a torn line read as NaN made these float; without it they are whole numbers again
    df = df.astype({"seed": "int64", "epochs": "int64", "attempt": "Int64"})
    return df


def migrate(src: Path, dst: Path | None = None) -> tuple[Path, int]:
    """Write ``src`` (an older schema version) as a current-version CSV at ``dst``.

    ``dst`` defaults to ``<src stem>.v<SCHEMA_VERSION>.csv`` beside ``src`` and must not exist;
    ``src`` is only read. Returns ``(dst, version of src)``. Rows torn by a crash are dropped.
    """
    src = Path(src)
    dst = Path(dst) if dst else src.with_name(f"{src.stem}.v{SCHEMA_VERSION}{src.suffix}")
    if not src.exists():
        raise LeaderboardError(f"{src} does not exist")
    with open(src, encoding="utf-8", newline="") as f:
        version = _header_version(f.readline())
    if version is None:
        raise LeaderboardError(f"{src} is not a harness leaderboard of any known schema version; nothing written")
    if version == SCHEMA_VERSION:
        raise LeaderboardError(f"{src} is already schema version {SCHEMA_VERSION}; nothing to migrate")
    if dst.exists():
        raise LeaderboardError(f"{dst} already exists; choose another --output")
    df = _migrated(src, version)
    write_atomic(dst, df.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    return dst, version


def default_path(profile: str) -> Path:
    """Where ``harness evaluate`` appends: ``leaderboard.csv`` for the full protocol,
    ``leaderboard-<profile>.csv`` for the others."""
    return Path("leaderboard.csv" if profile == "full" else f"leaderboard-{profile}.csv")


def find_default(profile: str | None = None) -> Path:
    """What ``harness leaderboard`` reads without ``--leaderboard``. With ``profile``: the file
    ``harness evaluate --profile PROFILE`` appends to. Without: ``leaderboard.csv`` once it holds
    measured rows; before that (it ships with published rows only) the ``leaderboard-*.csv`` here
    written last, if there is one (e.g. the smoke demo's); else ``leaderboard.csv``. The views say
    which file they read and how to pick another (:func:`choice_note`)."""
    if profile is not None:
        path = default_path(profile)
        if not path.exists():
            raise UsageError(
                f"no {path} here: `harness evaluate FILE --profile {profile}` writes it (or pass --leaderboard CSV)"
            )
        return path
    main = default_path("full")
    found = sorted(Path(".").glob("leaderboard-*.csv"))
    if main.exists() and (not found or (read_rows(main)["origin"] == "measured").any()):
        return main
    if found:
        return max(found, key=lambda p: (p.stat().st_mtime, p.name))
    return main


def choice_note(path: Path) -> str | None:
    """One line saying which of several leaderboards here a view read, and how to pick another;
    None when there was no choice to make."""
    here = sorted(p for p in [default_path("full"), *Path(".").glob("leaderboard-*.csv")] if p.exists())
    if len(here) < 2:
        return None
    others = [p.stem.removeprefix("leaderboard-").replace("leaderboard", "full") for p in here if p != path]
    return f"reading {path} (written last); another profile with --profile {' | '.join(others)}"
