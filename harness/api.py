"""The harness from Python: evaluate a file and get the outcome as data, the same structure
``harness evaluate --json`` prints.

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
