"""The harness from Python: check and evaluate files and get typed results, the same data
``harness check`` shows and ``harness evaluate --json`` prints; read the board (:func:`leaderboard`) and
compare two entries (:func:`compare`) as typed records (pydantic models).

    from harness import api
    report = api.check("submissions/my_loss.py", sandbox="bwrap")
    report.ok, report.capabilities, report.warnings
    result = api.evaluate(["submissions/my_loss.py"], profile="smoke")
    result.exit_code, result.runs[0].best_fine_acc, result.skipped, result.standing[0]["score"]

Progress and tables go to ``console`` (standard error by default); nothing is printed to standard
output. A bad argument (``archs="resnet20"``, an unknown option or profile) raises
:class:`~harness.errors.UsageError` with a message that says what to pass; a rejected file is data
(``ok=False`` with the reason; ``rejected`` of an evaluation), not an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import SubmissionRejected, UsageError
from harness.report.data import BoardRecord, ComparisonRecord, EntryRecord

if TYPE_CHECKING:
    from rich.console import Console

    from harness.evaluate.options import EvaluateOptions
    from harness.evaluate.run import Outcome

# ------------------------------------------------------------------------ check and evaluate


class CheckResult(BaseModel):
    """One file's check: the static check, then its interface in the sandbox (``harness check``)."""

    path: str
    ok: bool
    problem: str | None = None  # why the file was rejected (None when ok)
    sandbox: str | None = None
    capabilities: list[str] = []  # the optional inputs the trainer will compute for it
    num_params: int | None = None  # of the loss module
    head_loss: bool = False  # it defines head_loss: the task heads follow it
    warnings: list[str] = []  # what it probably meant but will not get
    probes: int | None = None  # probe calls made
    call_ms: float | None = None  # median time of a probe call, round trip included
    full_run_worker_s: float | None = None  # that time over a full-protocol run's calls
    worker_budget_s: float | None = None  # what a run's worker may take in all
    runs_out_in_epoch: int | None = None  # where a full run would exhaust the budget (None: it lasts)


class RunRecord(BaseModel):
    """A run that ended in this evaluation, and whether its leaderboard row was written."""

    entry: str
    kind: str
    submission_sha256: str
    arch: str
    seed: int
    status: str
    best_fine_acc: float | None
    best_epoch: int | None  # counted from 1
    final_fine_acc: float | None
    best_coarse_acc: float | None
    wall_seconds: float
    reason: str | None
    run_dir: str
    row_written: bool


class SkippedRun(BaseModel):
    """A run of the plan that this evaluation did not train, and why."""

    entry: str
    kind: str
    submission_sha256: str
    arch: str
    seed: int
    status: str = "skipped"
    reason: str


class Rejection(BaseModel):
    path: str
    reason: str


class EvaluationResult(BaseModel):
    """What ``harness evaluate`` did (``--json`` prints this). ``standing``: this evaluation's entries as
    the leaderboard shows them now (the fields of ``harness leaderboard --format json``)."""

    exit_code: int
    leaderboard: str
    profile: str
    phase: str
    runs: list[RunRecord]
    skipped: list[SkippedRun]
    rejected: list[Rejection]
    checks: dict[str, CheckResult]  # the interface check of each file that was checked now, by its path
    standing: list[dict[str, Any]]


def check(path: str | Path, *, sandbox: str = "auto") -> CheckResult:
    """Check one file as ``harness check`` does (``sandbox``: auto, docker, bwrap or none; auto falls back
    to none with a warning on ``console`` when no sandbox is installed). A rejected file gives ``ok=False``
    and the reason in ``problem``."""
    from harness.evaluate.names import check_name
    from harness.isolation.check import directory_message, interface_check, static_check
    from harness.isolation.sandbox import resolve_sandbox

    if not isinstance(path, (str, Path)):
        raise UsageError(f"check takes one file (a str or Path), got {type(path).__name__}: check each file in turn")
    chosen, _ = resolve_sandbox(sandbox, allow_fallback=True)
    path = Path(path)
    try:
        if path.is_dir():
            raise SubmissionRejected(directory_message(path))
        check_name(path.name, str(path))
        static_check(path)
        report = interface_check(path, sandbox=chosen)
    except SubmissionRejected as e:
        return CheckResult(path=str(path), ok=False, problem=str(e), sandbox=chosen.name)
    return _check_result(path, chosen.name, report)


def _check_result(path: Path | str, sandbox: str | None, report: Any) -> CheckResult:
    full = report.projection()
    return CheckResult(
        path=str(path),
        ok=True,
        sandbox=sandbox,
        capabilities=list(report.capabilities),
        num_params=report.num_params,
        head_loss=report.head_loss,
        warnings=list(report.warnings),
        probes=report.probes,
        call_ms=None if report.call_seconds is None else round(report.call_seconds * 1e3, 3),
        full_run_worker_s=None if full is None else round(full.seconds, 1),
        worker_budget_s=None if full is None else full.budget,
        runs_out_in_epoch=None if full is None else full.exhausted_at_epoch,
    )


def evaluate(
    paths: str | Path | Sequence[str | Path],
    *,
    profile: str = "full",
    kind: str = "submission",
    console: Console | None = None,
    **options: Any,
) -> EvaluationResult:
    """Evaluate ``paths`` as ``harness evaluate`` does and return what happened. ``options``: the fields of
    :class:`~harness.evaluate.options.EvaluateOptions` (``archs=["resnet20"]``, ``seeds=[42]``, ``sandbox="bwrap"``,
    ``leaderboard="lb.csv"``, ...). A rejected file is listed in ``rejected`` (exit code 2), the others go on."""
    from harness.util.text import SafeConsole

    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    opts = evaluate_options(profile, kind, options)
    return run_to_result(files, opts, console or SafeConsole(stderr=True, highlight=False))


def run_to_result(files: list[Path], opts: EvaluateOptions, console: Console) -> EvaluationResult:
    """Run the evaluation; a single file's rejection (the command's error) becomes the result's."""
    from harness.evaluate.run import run_evaluation
    from harness.report import console as show

    try:
        return evaluation_result(run_evaluation(files, opts, console), opts)
    except SubmissionRejected as e:
        show.rejected(console, e)
        return EvaluationResult(
            exit_code=2,
            leaderboard=str(opts.leaderboard_path),
            profile=opts.profile.name,
            phase=opts.phase,
            runs=[],
            skipped=[],
            rejected=[Rejection(path=str(files[0]), reason=str(e))],
            checks={},
            standing=[],
        )


def evaluate_options(profile: str, kind: str, options: dict[str, Any]) -> EvaluateOptions:
    """The options model from keyword arguments, with a plain message for a bad one (no validation dump)."""
    from harness.evaluate.options import EvaluateOptions
    from harness.protocol import get_profile

    fields = EvaluateOptions.model_fields
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(unknown)}; the options are: {', '.join(sorted(fields))}")
    for name in ("archs", "seeds"):
        if isinstance(options.get(name), (str, int)):
            example = "['resnet20']" if name == "archs" else "[42, 123]"
            raise UsageError(f"{name} is a list, e.g. {name}={example} (got {options[name]!r})")
    try:
        return EvaluateOptions(profile=get_profile(profile), kind=kind, **options)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'options'}={err.get('input')!r}: {err['msg']}" for err in e.errors()
        )
        raise UsageError(f"invalid evaluation options: {problems}") from None


def evaluation_result(outcome: Outcome, opts: EvaluateOptions) -> EvaluationResult:
    """An :class:`~harness.evaluate.run.Outcome` as an :class:`EvaluationResult`."""
    from harness import report
    from harness import results as leaderboard
    from harness.report.data import entry_record
    from harness.results.retired import retired

    runs = []
    for rec in outcome.records:
        spec, r = rec.spec, rec.result
        runs.append(
            RunRecord(
                entry=spec.submission,
                kind=spec.kind,
                submission_sha256=spec.submission_sha256,
                arch=spec.arch,
                seed=spec.seed,
                status=r.status,
                best_fine_acc=r.best_fine_acc,
                best_epoch=None if r.best_epoch is None else r.best_epoch + 1,
                final_fine_acc=r.final_fine_acc,
                best_coarse_acc=r.best_coarse_acc,
                wall_seconds=round(r.wall_seconds, 2),
                reason=r.reason,
                run_dir=str(rec.run.path),
                row_written=rec.written,
            )
        )
    standing: list[dict[str, Any]] = []
    if outcome.leaderboard.exists():
        rep = report.build(
            leaderboard.read_rows(outcome.leaderboard), opts.phase, opts.profile.name, retired(outcome.leaderboard)
        )
        standing = [entry_record(rep, e, e.kind) for e in rep.entries if e.version_key in outcome.versions]
    return EvaluationResult(
        exit_code=int(outcome.code),
        leaderboard=str(outcome.leaderboard),
        profile=opts.profile.name,
        phase=opts.phase,
        runs=runs,
        skipped=skipped_runs(outcome),
        rejected=[Rejection(path=p, reason=why) for p, why in outcome.rejected.items()],
        checks={p: _check_result(p, outcome.sandbox, c) for p, c in outcome.checks.items()},
        standing=standing,
    )


def skipped_runs(outcome: Outcome) -> list[SkippedRun]:
    """The planned runs not trained now: done already, or finished earlier with a row recorded now or
    still waiting to be written."""
    lb = outcome.leaderboard
    out = []
    for f in outcome.files:
        ident = dict(entry=f.entry.name, kind=f.entry.kind, submission_sha256=f.sha)
        for (arch, seed), finished in f.skipped.items():
            why = f"already in {lb} (ok, finished {finished}) for this version; --force runs it again"
            out.append(SkippedRun(**ident, arch=arch, seed=seed, reason=why))
        for row in f.recovered:
            why = f"finished at {row.finished_at} in an earlier evaluation; its row was written to {lb} now"
            out.append(SkippedRun(**ident, arch=row.arch, seed=row.seed, reason=why))
        for row, problem, kept in f.unwritten:
            why = f"finished earlier; its row is kept in {kept} and could not be written to {lb}: {problem}"
            out.append(SkippedRun(**ident, arch=row.arch, seed=row.seed, reason=why))
    return out


def evaluate_files(
    paths: Sequence[str | Path],
    *,
    profile: str = "full",
    kind: str = "submission",
    console: Console | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`evaluate` as plain data (JSON-ready), as ``harness evaluate --json`` prints it; kept for
    scripts written against it. Unlike :func:`evaluate`, a single rejected file raises
    :class:`~harness.errors.SubmissionRejected`."""
    from harness.evaluate.run import run_evaluation
    from harness.util.text import SafeConsole

    opts = evaluate_options(profile, kind, options)
    out = console or SafeConsole(stderr=True, highlight=False)
    return evaluation_result(run_evaluation([Path(p) for p in paths], opts, out), opts).model_dump(mode="json")


# ---- the board as typed data: harness leaderboard and harness compare ----------------------------------


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
    from harness import report
    from harness import results as leaderboard
    from harness.results.retired import retired

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
    from harness.report.compare import find_entry, paired
    from harness.report.data import comparison_record, entry_model
    from harness.results import aggregate

    q = _query(leaderboard=path, profile=profile, phase=phase, versions=versions)
    rep = _report(q)
    first, second = find_entry(rep, a), find_entry(rep, b)
    if first is second:
        raise UsageError(f"{a!r} and {b!r} name the same entry")
    rows = {k: comparison_record(aggregate.compare(x, y)) for k, (x, y) in paired(first, second, rep.archs).items()}
    return CompareResult(a=entry_model(rep, first, first.kind), b=entry_model(rep, second, second.kind), rows=rows)
