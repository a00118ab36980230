"""The served board's one adapter to the rest of the harness: everything :mod:`harness.serve` uses of
it goes through here.

- **Intake**: the command line's own checks on an upload (the entry-name rule and the baselines'
  reserved names of :mod:`harness.evaluate.names`, the size limit and the static check of
  :mod:`harness.isolation.check`), with the command line's messages. Nothing is imported.
- **Evaluation**: the ``harness evaluate FILE --json`` command line of a submission, run as a child
  process by :mod:`harness.serve.runner` (so the server never imports a submission, and a child's
  crash is not the server's).
- **The board**: the ``harness leaderboard --format json|html`` command lines; the leaderboard's
  header (for a board with no rows yet); and the rows of one file version, read from the CSV by its
  documented column names.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import tempfile
from pathlib import Path

from harness.errors import SubmissionRejected
from harness.evaluate.names import SOURCE_BASELINES, baseline_names, check_name, reserved_problem
from harness.isolation.check import MAX_FILE_BYTES, read_submission, static_check
from harness.results import HEADER_LINE, default_path
from harness.serve.settings import ServeSettings
from harness.util.fileio import sha256_file

__all__ = ["MAX_FILE_BYTES", "default_path", "sha256_file"]

HARNESS = [sys.executable, "-m", "harness.cli"]  # this interpreter and this harness, whatever PATH says


def reserved_names(leaderboard: Path) -> set[str]:
    """The names no submission may take: the baselines' files, and every measured baseline's entry."""
    return baseline_names(SOURCE_BASELINES) | {
        r["submission"] for r in measured_rows(leaderboard) if r.get("kind") == "baseline"
    }


def entry_name(filename: str, name: str | None, reserved: set[str]) -> str:
    """The entry an upload is evaluated as: ``name`` when given, else the file's name, checked against
    the rule and the reserved names exactly as ``harness evaluate [--name NAME] FILE`` checks them.
    Raises :class:`SubmissionRejected` with the command line's message."""
    chosen = name or filename
    check_name(chosen, f"--name {chosen}" if name else filename, option=bool(name), reserved=reserved)
    problem = reserved_problem(chosen, reserved)
    if problem:
        raise SubmissionRejected(f"{filename}: {problem}")
    return chosen


def check_upload(entry: str, data: bytes, staging: Path) -> str:
    """Run the size limit and the static check on ``data`` as ``harness evaluate ENTRY`` runs them on a
    file of that name; return its sha256. The bytes are staged in a private temporary directory under
    ``staging`` (removed after) and the messages name the file as the participant named it."""
    where = Path(tempfile.mkdtemp(prefix="intake-", dir=staging))
    try:
        path = where / entry  # entry follows the name rule: one plain file name
        path.write_bytes(data)
        path.chmod(0o600)
        try:
            checked = read_submission(path)
            static_check(path, checked)
        except SubmissionRejected as e:
            raise SubmissionRejected(str(e).replace(f"{where}/", "")) from None
        return sha256_file(path)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def evaluate_command(settings: ServeSettings, file: Path) -> list[str]:
    """``harness evaluate FILE --json`` with the server's evaluation options."""
    s = settings
    cmd = [*HARNESS, "evaluate", str(file), "--json", "--profile", s.profile, "--phase", s.phase]
    cmd += ["--sandbox", s.sandbox, "--leaderboard", str(s.leaderboard), "--runs-dir", str(s.runs_dir)]
    if s.data_dir:
        cmd += ["--data-dir", str(s.data_dir)]
    if s.device:
        cmd += ["--device", s.device]
    if s.jobs:
        cmd += ["--jobs", str(s.jobs)]
    if s.executor != "local":
        cmd += ["--executor", s.executor]
    if s.ray_address:
        cmd += ["--ray-address", s.ray_address]
    return cmd


def board_command(settings: ServeSettings, fmt: str, leaderboard: Path) -> list[str]:
    """``harness leaderboard --format FMT`` of the server's profile and phase."""
    return [
        *HARNESS,
        "leaderboard",
        "--format",
        fmt,
        "--leaderboard",
        str(leaderboard),
        "--profile",
        settings.profile,
        "--phase",
        settings.phase,
        "--runs-dir",
        str(settings.runs_dir),
    ]


def write_empty_leaderboard(path: Path) -> None:
    """A leaderboard with its header and no row: what the board shows before the first row lands."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(HEADER_LINE)


def measured_rows(leaderboard: Path) -> list[dict[str, str]]:
    """The measured rows of the CSV as text (a missing file has none; a torn line is skipped)."""
    try:
        with open(leaderboard, newline="", encoding="utf-8", errors="replace") as f:
            rows = [r for r in csv.DictReader(f) if r.get("origin", "measured") == "measured"]
    except FileNotFoundError:
        return []
    return [r for r in rows if r.get("status") in ("ok", "failed") and None not in r]


def version_rows(settings: ServeSettings, entry: str, sha256: str) -> list[dict[str, str]]:
    """Every row of one file version of a submission under the server's profile and phase."""
    return [
        r
        for r in measured_rows(settings.leaderboard or default_path(settings.profile))
        if r.get("kind") == "submission"
        and r.get("submission") == entry
        and r.get("submission_sha256") == sha256
        and r.get("profile") == settings.profile
        and r.get("phase") == settings.phase
    ]


def leaderboard_entries(leaderboard: Path) -> set[str]:
    """The submission entries the CSV holds (whoever evaluated them)."""
    return {r["submission"] for r in measured_rows(leaderboard) if r.get("kind") == "submission"}
