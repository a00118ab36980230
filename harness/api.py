"""The harness from Python: evaluate a file and get the outcome as data, the same structure
``harness evaluate --json`` prints; read the board (:func:`leaderboard`) and compare two entries
(:func:`compare`) as typed records (pydantic models).

    from harness.api import evaluate_files
    result = evaluate_files(["submissions/my_loss.py"], profile="smoke")
    result["exit_code"], result["runs"][0]["best_fine_acc"], result["standing"][0]["score"]

``runs``: one record per run that ended in this evaluation (entry, kind, sha256, arch, seed, status,
accuracies, best epoch counted from 1, seconds, reason, run directory, whether its row was written).
``standing``: this evaluation's entries as the leaderboard shows them now (the fields of
``harness leaderboard --format json``). Progress and tables go to ``console`` (standard error by
default); nothing is printed to standard output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.evaluate import Outcome, run_evaluation
from harness.plan import EvaluateOptions
from harness.protocol import Kind, get_profile
from harness.text import SafeConsole


def outcome_data(outcome: Outcome, opts: EvaluateOptions) -> dict[str, Any]:
    """An :class:`~harness.evaluate.Outcome` as plain data (JSON-ready)."""
    from harness import leaderboard, report
    from harness.leaderboard.retired import retired
    from harness.report.data import entry_record

    runs = []
    for rec in outcome.records:
        spec, r = rec.spec, rec.result
        runs.append(
            {
                "entry": spec.submission,
                "kind": spec.kind,
                "submission_sha256": spec.submission_sha256,
                "arch": spec.arch,
                "seed": spec.seed,
                "status": r.status,
                "best_fine_acc": r.best_fine_acc,
                "best_epoch": None if r.best_epoch is None else r.best_epoch + 1,
                "final_fine_acc": r.final_fine_acc,
                "best_coarse_acc": r.best_coarse_acc,
                "wall_seconds": round(r.wall_seconds, 2),
                "reason": r.reason,
                "run_dir": str(rec.run.path),
                "row_written": rec.written,
            }
        )
    standing: list[dict[str, Any]] = []
    if outcome.leaderboard.exists():
        rep = report.build(
            leaderboard.read_rows(outcome.leaderboard), opts.phase, opts.profile.name, retired(outcome.leaderboard)
        )
        standing = [entry_record(rep, e, e.kind) for e in rep.entries if e.version_key in outcome.versions]
    return {
        "exit_code": int(outcome.code),
        "leaderboard": str(outcome.leaderboard),
        "profile": opts.profile.name,
        "phase": opts.phase,
        "runs": runs,
        "standing": standing,
    }


def evaluate_files(
    paths: Sequence[str | Path],
    *,
    profile: str = "full",
    kind: Kind = "submission",
    console: Console | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate ``paths`` as ``harness evaluate`` does (``options``: the fields of
    :class:`~harness.plan.EvaluateOptions`, e.g. ``archs=("resnet20",)``, ``sandbox="bwrap"``) and
    return the outcome as data. A rejected file raises :class:`~harness.errors.SubmissionRejected`
    when it is the only one; with several, the others go on and ``exit_code`` is 2."""
    opts = EvaluateOptions(profile=get_profile(profile), kind=kind, **options)
    out = console or SafeConsole(stderr=True, highlight=False)
    return outcome_data(run_evaluation([Path(p) for p in paths], opts, out), opts)


# ---- the board as typed data: harness leaderboard and harness compare ----------------------------------
# (self-contained, imports included, so that the other parts of this module can change beside it)

from typing import Literal  # noqa: E402

from pydantic import BaseModel, ConfigDict, ValidationError  # noqa: E402

from harness.errors import UsageError  # noqa: E402
from harness.report.data import BoardRecord, ComparisonRecord, EntryRecord  # noqa: E402


class BoardQuery(BaseModel):
    """What :func:`leaderboard` and :func:`compare` read: the leaderboard file (None: the one the CLI
    reads here), the profile, the phase, one architecture to rank on, the versions to rank."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    leaderboard: Path | None = None
    profile: str | None = None
    phase: Literal["public", "final"] = "public"
    arch: str | None = None
    versions: tuple[str, ...] = ()


class CompareResult(BaseModel):
    """Two entries compared directly (``harness compare``): per architecture and ``score`` (per-seed
    scores), the paired difference ``a - b``, its interval and the unadjusted p-value (one comparison
    the caller chose)."""

    model_config = ConfigDict(frozen=True)

    a: EntryRecord
    b: EntryRecord
    rows: dict[str, ComparisonRecord]


def _query(**given: Any) -> BoardQuery:
    """The arguments as a :class:`BoardQuery`; a wrong one is a :class:`UsageError` that names it and
    says what it takes (never a raw validation dump)."""
    if isinstance(given.get("versions"), str):
        given["versions"] = (given["versions"],)
    try:
        return BoardQuery(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'arguments'}: {err['msg']}" for err in e.errors()
        )
        raise UsageError(f"harness.api: {problems}") from None


def _report(q: BoardQuery, arch: str | None = None):
    from harness import leaderboard, report
    from harness.leaderboard.retired import retired

    path = q.leaderboard or leaderboard.find_default(q.profile)
    if not Path(path).exists():
        raise UsageError(f"{path} does not exist; evaluate something first or pass leaderboard=PATH")
    return report.build(leaderboard.read_rows(path), q.phase, q.profile, retired(path), arch, q.versions)


def leaderboard(
    path: str | Path | None = None,
    *,
    profile: str | None = None,
    phase: str = "public",
    arch: str | None = None,
    versions: Sequence[str] | str = (),
) -> BoardRecord:
    """The board as ``harness leaderboard --format json`` gives it, typed: its entries (scores,
    ranks, comparisons), every test of its families (unrounded, with weights: Holm can be rebuilt),
    what it can detect, and the retired versions.

        board = leaderboard("leaderboard-smoke.csv")
        [(e.name, e.version, e.rank, e.score) for e in board.entries if e.headline]

    Raises :class:`~harness.errors.UsageError` with a message for a wrong argument or file."""
    from harness.report.data import board_model

    q = _query(leaderboard=path, profile=profile, phase=phase, arch=arch, versions=versions)
    return board_model(_report(q, q.arch))


def compare(
    a: str,
    b: str,
    *,
    path: str | Path | None = None,
    profile: str | None = None,
    phase: str = "public",
    versions: Sequence[str] | str = (),
) -> CompareResult:
    """``harness compare A B`` as data: ``a`` and ``b`` name entries as the command takes them (``x``,
    ``x.py``, ``x@1a2b3c4d``). Raises :class:`~harness.errors.UsageError` when one names no entry
    (with the command that would run a missing baseline) or several."""
    from harness import aggregate
    from harness.report.compare import find_entry, paired
    from harness.report.data import comparison_record, entry_model

    q = _query(leaderboard=path, profile=profile, phase=phase, versions=versions)
    rep = _report(q)
    first, second = find_entry(rep, a), find_entry(rep, b)
    if first is second:
        raise UsageError(f"{a!r} and {b!r} name the same entry")
    rows = {k: comparison_record(aggregate.compare(x, y)) for k, (x, y) in paired(first, second, rep.archs).items()}
    return CompareResult(a=entry_model(rep, first, first.kind), b=entry_model(rep, second, second.kind), rows=rows)
