"""``harness runs FILE``: every row one submission has in a leaderboard, every version and attempt,
oldest first, as a person checks what ran, what failed and what a re-run would skip."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import UsageError
from harness.evaluate.names import place_of
from harness.protocol import VersionKey
from harness.results.aggregate import DEFAULT_SETTINGS, settings_labels
from harness.util.fileio import sha256_file


def submission_rows(
    rows: pd.DataFrame, target: str, lb_path: Path, profile: str | None = None, kind: str | None = None
) -> tuple[str, pd.DataFrame, str | None]:
    """The entry name ``target`` means (a path to the file, or its name with or without ``.py``), its
    measured rows (of ``profile`` and ``kind`` only, when given), and the sha256 of the file when it
    is one here (its current version). For a file, only the rows recorded from its place count: a
    file of the same name elsewhere is another entry's (:mod:`harness.evaluate.names`); when every row of the
    name comes from elsewhere, :class:`UsageError` says where."""
    path = Path(target)
    current = sha256_file(path) if path.is_file() else None
    name = path.name if path.suffix == ".py" else f"{path.name}.py"
    mine = rows[(rows["submission"] == name) & (rows["origin"] == "measured")]
    if kind is not None:
        mine = mine[mine["kind"] == kind]
    if profile is not None:
        mine = mine[mine["profile"] == profile]
    if current is not None and not mine.empty:
        place = place_of(path, lb_path)
        here = mine[mine["submission_path"].isin(["", place])]
        if here.empty:
            where = ", ".join(sorted(set(mine["submission_path"])))
            raise UsageError(
                f"{target} has no rows in {lb_path}: the entry {name} there is the file at {where}, "
                f"and {place} is another file"
            )
        mine = here
    return name, mine.sort_values("finished_at", kind="stable"), current


def render_runs(
    console: Console,
    rows: pd.DataFrame,
    target: str,
    lb_path: Path,
    runs_dir: Path,
    retired: Collection[VersionKey] = (),
    *,
    profile: str | None = None,
) -> None:
    """The table (a profile column when the rows hold several, a kind column when the name is both a
    submission's and a baseline's); versions in ``retired`` (this entry's, by kind, name and sha256:
    never a byte-identical copy's) are marked so (hidden from the views)."""
    name, mine, current = submission_rows(rows, target, lb_path, profile)
    if mine.empty:
        known = ", ".join(sorted(set(rows.loc[rows["origin"] == "measured", "submission"]))) or "none"
        raise UsageError(f"no rows of {name} in {lb_path}; submissions there: {known}")
    settings = settings_labels(mine)
    show_settings = any(s != DEFAULT_SETTINGS for s in settings)
    profiles = sorted(set(mine["profile"]))
    kinds = len(set(mine["kind"])) > 1
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for col in (
        ("version", "finished (UTC)")
        + (("kind",) if kinds else ())
        + (("profile",) if len(profiles) > 1 else ())
        + ("phase",)
        + (("settings",) if show_settings else ())
        + ("arch", "seed", "try", "status", "best", "time")
    ):
        table.add_column(col, justify="right" if col in ("seed", "try", "best", "time") else "left", no_wrap=True)
    for (_, r), s in zip(mine.iterrows(), settings):
        version = (
            r["submission_sha256"][:8]
            + (" *" if r["submission_sha256"] == current else "")
            + (" retired" if VersionKey.of(r["kind"], r["submission"], r["submission_sha256"]) in retired else "")
        )
        status = "[green]ok[/]" if r["status"] == "ok" else "[red]failed[/]"
        best = "" if pd.isna(r["best_fine_acc"]) else f"{r['best_fine_acc']:.2f}"
        table.add_row(
            version,
            str(r["finished_at"])[:16].replace("T", " "),
            *((str(r["kind"]),) if kinds else ()),
            *((escape(str(r["profile"])),) if len(profiles) > 1 else ()),
            str(r["phase"]),
            *((escape(s),) if show_settings else ()),
            str(r["arch"]),
            str(r["seed"]),
            str(r["attempt"]),
            status,
            best,
            f"{r['wall_seconds']:.0f} s" if pd.notna(r["wall_seconds"]) else "",
        )
    console.print(
        f"{escape(name)} in {escape(str(lb_path))} (profile {escape(', '.join(map(str, profiles)))}): "
        f"{len(mine)} row(s), {mine['submission_sha256'].nunique()} version(s)"
    )
    console.print(table)
    if current is None:
        notes = [f"{target} is not a file here: its versions are told apart by sha256"]
    elif (mine["submission_sha256"] == current).any():
        notes = ["* = the version of the file here now"]
    else:
        last = str(mine["profile"].iloc[-1])
        again = f"harness evaluate {target}" + ("" if last == "full" else f" --profile {last}")
        notes = [f"the file here now (version {current[:8]}) has no row yet: `{again}` runs it"]
    notes.append(
        f"each run's files: {runs_dir}/<run_id> (failure.txt says why a run failed), e.g. "
        f"{runs_dir}/{mine['run_id'].iloc[-1]}"
    )
    for note in notes:
        console.print(f"[dim]{escape(note)}[/]")
