"""``harness evaluate``: check a submission, train every (architecture, seed) of the
profile with it, and append one leaderboard row per run.

Each run is independent: a failed run is reported (terminal, ``failure.txt``, a
``failed`` row) and the others go on. The submission is copied into the evaluation's
directory first; that copy is what is hashed, checked and run, so editing the file
while an evaluation runs changes nothing.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import leaderboard
from harness.errors import SubmissionRejected, UsageError
from harness.data import default_data_dir, ensure_synthetic, load_dataset
from harness.models import get_arch, load_hidden_archs
from harness.progress import RichProgress
from harness.protocol import HIDDEN_ARCHS, Kind, LeaderboardRow, Phase, Precision, Profile, RunResult, RunSpec
from harness.provenance import device_name, harness_commit, harness_version, utc_now
from harness.sandbox import resolve_sandbox
from harness.submission import CheckReport, interface_check, sha256_file, static_check
from harness.parallel import Job, run_parallel
from harness.train import resolve_device, resolve_precision, run_one


@dataclass(frozen=True)
class EvaluateOptions:
    profile: Profile
    phase: Phase = "public"
    archs: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    device: str = "auto"
    data_dir: Path | None = None
    runs_dir: Path = Path("runs")
    leaderboard: Path | None = None
    sandbox: str = "auto"
    kind: Kind = "submission"
    hidden_dir: Path | None = None
    force: bool = False
    precision: Precision | None = None  # None: the profile's default
    jobs: int = 1
    compile: bool = False
    deterministic: bool = False


def default_leaderboard(profile: Profile) -> Path:
    """``leaderboard.csv`` for the full protocol, ``leaderboard-<profile>.csv`` otherwise."""
    return Path("leaderboard.csv" if profile.name == "full" else f"leaderboard-{profile.name}.csv")


def planned_archs(opts: EvaluateOptions) -> tuple[str, ...]:
    """The requested architectures, else the profile's plus the hidden ones in the final phase.
    Loads the hidden architectures when the plan needs them."""
    archs = opts.archs or (opts.profile.archs + (HIDDEN_ARCHS if opts.phase == "final" else ()))
    if any(a in HIDDEN_ARCHS for a in archs):
        if opts.phase != "final":
            raise UsageError("the hidden architectures are evaluated only with --phase final")
        load_hidden_archs(opts.hidden_dir)
    for a in archs:
        get_arch(a)  # a clear error for an unknown name, before anything trains
    return archs


def prepare_submission(path: Path, runs_dir: Path, profile: Profile) -> tuple[Path, str]:
    """Statically check ``path`` and copy it into its evaluation directory.

    Returns the copy and its sha256. Raises ``SubmissionRejected``.
    """
    static_check(path)
    sha = sha256_file(path)
    eval_dir = runs_dir / profile.name / f"{path.stem}-{sha[:12]}"
    eval_dir.mkdir(parents=True, exist_ok=True)
    copy = eval_dir / "submission.py"
    if not copy.exists() or sha256_file(copy) != sha:
        tmp = eval_dir / ".submission.py.tmp"
        shutil.copyfile(path, tmp)
        tmp.replace(copy)
    if sha256_file(copy) != sha:  # the file changed between hashing and copying
        raise SubmissionRejected(f"{path} changed while it was being read; run again")
    return copy, sha


def load_data(profile: Profile, data_dir: Path | None):
    root = Path(data_dir) if data_dir else default_data_dir(profile.dataset)
    if profile.dataset == "synthetic":
        ensure_synthetic(root)
    train, test = load_dataset(root, dataset=profile.dataset)
    return train.head(profile.train_subset), test.head(profile.test_subset)


def print_capabilities(console: Console, report: CheckReport) -> None:
    caps = ", ".join(report.capabilities) or "none (losses, epoch and total_epochs only)"
    console.print(f"interface ok: {report.num_params} loss-module parameters; extra inputs: {caps}")


def evaluate(path: Path, opts: EvaluateOptions, console: Console) -> int:
    """Run the evaluation; returns the exit code (0 all ok, 1 a run failed).

    Raises ``SubmissionRejected`` (exit 2) before training when the file or its
    interface is bad, and other :class:`HarnessError` subclasses for setup errors.
    """
    path = Path(path)
    profile = opts.profile
    lb_path = opts.leaderboard or default_leaderboard(profile)
    existing = leaderboard.read_rows(lb_path)  # refuses a foreign CSV before hours of training
    archs = planned_archs(opts)
    seeds = opts.seeds or profile.seeds
    device = resolve_device(opts.device)
    copy, sha = prepare_submission(path, opts.runs_dir, profile)
    eval_dir = copy.parent
    precision = resolve_precision(opts.precision or profile.precision, device)
    settings = dict(precision=precision, compile=opts.compile, deterministic=opts.deterministic)
    done = {} if opts.force else completed_runs(existing, sha, profile.name, opts.phase, settings)
    for arch, seed in ((a, s) for a in archs for s in seeds if (a, s) in done):
        console.print(f"skipping {arch} seed {seed}: already in {lb_path} (ok, finished {done[(arch, seed)]}) "
                      "for this file version; --force re-runs it")
    if all((a, s) in done for a in archs for s in seeds):
        console.print(f"nothing to run: every run of {path.name} (sha256 {sha[:12]}) is already in {lb_path}")
        _standing(console, lb_path, profile, opts.phase, sha)
        return 0
    sandbox, warning = resolve_sandbox(opts.sandbox, allow_fallback=profile.allow_unsandboxed_fallback)
    if warning:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}")

    console.print(f"checking {path} (sha256 {sha[:12]}) in sandbox '{sandbox.name}'")
    report = interface_check(copy, sandbox=sandbox, log_path=eval_dir / "check.log",
                             start_timeout=profile.worker_start_timeout_s, call_timeout=profile.worker_call_timeout_s)
    print_capabilities(console, report)

    train, test = load_data(profile, opts.data_dir)
    console.print(f"profile '{profile.name}': {profile.description}")
    console.print(f"data: {len(train):,} train / {len(test):,} test images; device {device_name(device)}; "
                  f"runs: {', '.join(archs)} x seeds {', '.join(map(str, seeds))}")
    console.print("settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()))

    jobs = [Job(RunSpec(submission=path.name, submission_sha256=sha, kind=opts.kind, profile=profile,
                        phase=opts.phase, arch=arch, seed=seed, device=str(device), sandbox=sandbox.name, **settings),
                eval_dir / opts.phase / f"{arch}-seed{seed}")
            for arch in archs for seed in seeds if (arch, seed) not in done]
    results: list[tuple[RunSpec, RunResult, str]] = []

    def record(job: Job, result: RunResult) -> None:  # the only place rows are written
        spec, run_dir = job.spec, job.run_dir
        run_id = str(run_dir.relative_to(opts.runs_dir))
        leaderboard.append_row(lb_path, _row(spec, result, torch.device(spec.device), run_id))
        if result.status == "failed":
            console.print(f"[red]run failed:[/] {escape(f'{spec.arch} seed {spec.seed}: {result.reason}')}\n"
                          f"  details: {run_dir / 'failure.txt'}; worker output: {run_dir / 'worker.log'}")
        results.append((spec, result, run_id))

    with RichProgress(console) as progress:
        if opts.jobs > 1 and len(jobs) > 1:
            console.print(f"running up to {opts.jobs} runs at once")
            run_parallel(jobs, n=opts.jobs, submission=copy, data_dir=opts.data_dir, sandbox_name=sandbox.name,
                         observer=progress, on_result=record)
        else:
            for job in jobs:
                outcome = run_one(job.spec, submission=copy, train=train, test=test, run_dir=job.run_dir,
                                  sandbox=sandbox, observer=progress)
                record(job, outcome.result)
    _summary(console, results, lb_path)
    _standing(console, lb_path, profile, opts.phase, sha)
    return 0 if all(r.status == "ok" for _, r, _ in results) else 1


def completed_runs(rows, sha: str, profile: str, phase: str, settings: dict) -> dict[tuple[str, int], str]:
    """``{(arch, seed): finished_at}`` of the ok rows of this file version, profile, phase and
    protocol settings (precision, compile, deterministic)."""
    ok = rows[(rows["submission_sha256"] == sha) & (rows["profile"] == profile) & (rows["phase"] == phase)
              & (rows["status"] == "ok")]
    for column, value in settings.items():
        ok = ok[ok[column].astype(str).str.lower() == str(value).lower()]
    return {(str(a), int(s)): str(t) for a, s, t in zip(ok["arch"], ok["seed"], ok["finished_at"])}


def _standing(console: Console, lb_path: Path, profile: Profile, phase: Phase, sha: str) -> None:
    """This file version against the baselines already in the leaderboard (same profile and phase)."""
    from harness import report

    rep = report.build(leaderboard.read_rows(lb_path), phase, profile.name)
    mine = [e for e in rep.entries if e.sha256 == sha]
    others = [e for e in rep.entries if e.kind == "baseline" and e.sha256 != sha]
    if not mine:
        return
    if not others:
        console.print(f"no baselines in {lb_path} for profile {profile.name} yet: "
                      f"`harness baselines --profile {profile.name}` adds them")
    rep = dataclasses.replace(rep, entries=mine + others, references=[])
    console.print(f"standing in {lb_path} (profile {profile.name}, phase {phase}):")
    report.render_table(rep, console, highlight=sha)


def _row(spec: RunSpec, result: RunResult, device, run_id: str) -> LeaderboardRow:
    return LeaderboardRow(
        finished_at=utc_now(), submission=spec.submission, submission_sha256=spec.submission_sha256,
        kind=spec.kind, profile=spec.profile.name, phase=spec.phase, arch=spec.arch, seed=spec.seed,
        epochs=spec.profile.epochs, best_fine_acc=result.best_fine_acc, best_epoch=result.best_epoch,
        final_fine_acc=result.final_fine_acc, best_coarse_acc=result.best_coarse_acc,
        wall_seconds=round(result.wall_seconds, 2), device=device_name(device), precision=spec.precision,
        channels_last=spec.channels_last, compile=spec.compile, deterministic=spec.deterministic,
        torch_version=torch.__version__, harness_version=harness_version(),
        harness_commit=harness_commit(), sandbox=spec.sandbox, run_id=run_id, status=result.status,
    )


def _summary(console: Console, results: list[tuple[RunSpec, RunResult, str]], lb_path: Path) -> None:
    table = Table(title="results", title_justify="left")
    for col in ("arch", "seed", "status", "best fine acc", "best epoch", "final fine acc", "best coarse acc", "time"):
        table.add_column(col, justify="left" if col in ("arch", "status") else "right")
    for spec, r, _ in results:
        fmt = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
        status = "[green]ok[/]" if r.status == "ok" else "[red]failed[/]"
        table.add_row(spec.arch, str(spec.seed), status, fmt(r.best_fine_acc),
                      "" if r.best_epoch is None else str(r.best_epoch), fmt(r.final_fine_acc),
                      fmt(r.best_coarse_acc), f"{r.wall_seconds:.0f} s")
    console.print(table)
    console.print(f"appended {len(results)} row(s) to {lb_path}")
