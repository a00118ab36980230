"""``harness evaluate``: check one or several submissions, train every (architecture, seed)
of the profile with each, all runs scheduled together by one executor, and append one
leaderboard row per run.

Each run is independent: a failed run is reported (terminal, ``failure.txt``, a
``failed`` row) and the others go on. A row that cannot be appended (a full disk) is kept
as ``row.json`` in its run directory and recorded by the next evaluation without training.
Each submission is copied into its evaluation's directory first; that copy is what is
hashed, checked and run, so editing the file while an evaluation runs changes nothing.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import leaderboard
from harness.errors import LeaderboardError, SubmissionRejected, UsageError
from harness.data import default_data_dir, ensure_synthetic, load_dataset
from harness.models import get_arch, load_hidden_archs
from harness.executors import Executor, Job
from harness.executors.inline import InlineExecutor
from harness.executors.local import LocalExecutor
from harness.fileio import write_atomic
from harness.progress import EvaluationProgress
from harness.protocol import HIDDEN_ARCHS, Kind, LeaderboardRow, Phase, Precision, Profile, RunResult, RunSpec
from harness.provenance import device_name, harness_commit, harness_version, utc_now
from harness.sandbox import resolve_sandbox
from harness.submission import CheckReport, interface_check, sha256_file, static_check
from harness.train import resolve_device, resolve_precision

PENDING_ROW = "row.json"  # a finished run's row that could not be appended yet


ExecutorName = Literal["local", "ray"]


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
    jobs: int | None = None  # runs at once; None: 1 locally, as many as Ray's resources allow
    compile: bool = False
    deterministic: bool = False
    executor: ExecutorName = "local"
    ray_address: str | None = None
    gpus_per_run: float | None = None  # None: 1 when the device is CUDA, else 0
    cpus_per_run: float | None = None  # None: 1 with a GPU, else the CPUs shared between the runs in flight
    ray_retries: int = 2


@dataclass
class _File:
    """One submission file of the evaluation."""

    path: Path
    copy: Path
    sha: str
    done: dict[tuple[str, int], str]  # runs not to train: in the leaderboard, or finished with an unwritten row
    unwritten: bool = False


def default_leaderboard(profile: Profile) -> Path:
    """``leaderboard.csv`` for the full protocol, ``leaderboard-<profile>.csv`` otherwise."""
    return Path("leaderboard.csv" if profile.name == "full" else f"leaderboard-{profile.name}.csv")


def planned_archs(opts: EvaluateOptions) -> tuple[str, ...]:
    """The requested architectures, else the profile's plus the hidden ones in the final phase.
    Loads the hidden architectures when the plan needs them."""
    archs = tuple(dict.fromkeys(opts.archs)) or (opts.profile.archs + (HIDDEN_ARCHS if opts.phase == "final" else ()))
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
    heads = "head_loss (the task heads follow it)" if report.head_loss else "the loss itself"
    console.print(f"interface ok: {report.num_params} loss-module parameters; extra inputs: {caps}; "
                  f"heads trained on: {heads}")


def evaluate(paths: Path | Sequence[Path], opts: EvaluateOptions, console: Console) -> int:
    """Evaluate one or several submission files, all their runs scheduled together; returns the
    exit code (0 all ok, 1 a run failed or a row could not be written, 2 a file was rejected).

    With a single file, a bad file or interface raises ``SubmissionRejected`` before training;
    with several, a rejected file is reported and the others go on. Setup errors raise other
    :class:`HarnessError` subclasses.
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    single = len(paths) == 1
    profile = opts.profile
    lb_path = opts.leaderboard or default_leaderboard(profile)
    existing = leaderboard.read_rows(lb_path)  # refuses a foreign CSV before hours of training
    archs = planned_archs(opts)
    seeds = tuple(dict.fromkeys(opts.seeds)) or profile.seeds  # a repeated --seed runs once
    device = _plan_device(opts)
    precision = resolve_precision(opts.precision or profile.precision, device)
    settings = dict(precision=precision, compile=opts.compile, deterministic=opts.deterministic)
    codes: dict[str, int] = {}  # per file as given: 0 ok, 1 a run failed or a row is unwritten, 2 rejected

    def rejected(path: Path, e: SubmissionRejected) -> None:
        if single:
            raise e
        console.print(f"[red]rejected:[/] {escape(str(e))}")
        codes[str(path)] = 2

    files = _plan_files(paths, opts, lb_path, existing, archs, seeds, settings, rejected, console)
    codes.update({str(f.path): 1 for f in files if f.unwritten})
    given = {f.sha: str(f.path) for f in files}  # two files may share a name: keep them apart
    todo = [f for f in files if not all((a, s) in f.done for a in archs for s in seeds)]
    for f in files:
        if f not in todo:
            console.print(f"nothing to run: every run of {f.path.name} (sha256 {f.sha[:12]}) is already in {lb_path}")
            codes.setdefault(str(f.path), 0)
    if not todo:
        _standing(console, lb_path, profile, opts.phase, {f.sha for f in files})
        return max(codes.values(), default=0)

    sandbox, warning = resolve_sandbox(opts.sandbox, allow_fallback=profile.allow_unsandboxed_fallback)
    if warning:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}")
    checked = []
    for f in todo:
        console.print(f"checking {f.path} (sha256 {f.sha[:12]}) in sandbox '{sandbox.name}'")
        try:
            report = interface_check(f.copy, sandbox=sandbox, log_path=f.copy.parent / "check.log",
                                     start_timeout=profile.worker_start_timeout_s,
                                     call_timeout=profile.worker_call_timeout_s)
        except SubmissionRejected as e:
            rejected(f.path, e)
            continue
        print_capabilities(console, report)
        checked.append(f)
    if not checked:
        return max(codes.values(), default=0)

    train, test = load_data(profile, opts.data_dir)
    console.print(f"profile '{profile.name}': {profile.description}")
    console.print(f"data: {len(train):,} train / {len(test):,} test images; device {_device_label(device, opts)}; "
                  f"runs: {', '.join(archs)} x seeds {', '.join(map(str, seeds))}"
                  + (f" x {len(checked)} files" if len(checked) > 1 else ""))
    console.print("settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()))

    jobs = [Job(RunSpec(submission=f.path.name, submission_sha256=f.sha, kind=opts.kind, profile=profile,
                        phase=opts.phase, arch=arch, seed=seed, device=str(device), sandbox=sandbox.name, **settings),
                f.copy.parent / opts.phase / f"{arch}-seed{seed}", f.copy)
            for f in checked for arch in archs for seed in seeds if (arch, seed) not in f.done]
    results: list[tuple[RunSpec, RunResult, bool]] = []  # bool: its row was written

    def record(job: Job, result: RunResult) -> None:  # the only place rows are written
        spec, run_dir = job.spec, job.run_dir
        run_id = str(run_dir.relative_to(opts.runs_dir))
        label = f"{spec.submission} {spec.arch} seed {spec.seed}"
        if result.status == "failed":
            console.print(f"[red]run failed:[/] {escape(f'{label}: {result.reason}')}\n"
                          f"  details: {run_dir / 'failure.txt'}; worker output: {run_dir / 'worker.log'}")
        written = _append(lb_path, _row(spec, result, run_id), run_dir, label, console)
        results.append((spec, result, written))
        name = given[spec.submission_sha256]
        codes[name] = max(codes.get(name, 0), 0 if written and result.status == "ok" else 1)

    executor = _make_executor(opts, device, sandbox, train, test, len(jobs), console)
    with EvaluationProgress(console, [j.spec for j in jobs], parallel=executor_parallelism(opts, len(jobs))) as progress:
        executor.run(jobs, progress, record)
    _summary(console, results, lb_path, several=len(checked) > 1)
    _standing(console, lb_path, profile, opts.phase, {f.sha for f in files})
    bad = sorted(name for name, code in codes.items() if code)
    if len(paths) > 1 and bad:
        console.print(f"[red]not ok:[/] {', '.join(bad)}")
    return max(codes.values(), default=0)


def _plan_files(paths: list[Path], opts: EvaluateOptions, lb_path: Path, existing, archs, seeds, settings: dict,
                rejected, console: Console) -> list[_File]:
    """Statically check and copy each file (a rejected one goes to ``rejected``), drop repeats,
    record rows left pending by an earlier evaluation, and find the runs already done."""
    files: list[_File] = []
    for path in paths:
        try:
            copy, sha = prepare_submission(path, opts.runs_dir, opts.profile)
        except SubmissionRejected as e:
            rejected(path, e)
            continue
        if any(f.sha == sha for f in files):
            console.print(f"{path}: the same file as one already listed (sha256 {sha[:12]}); evaluated once")
            continue
        done = {} if opts.force else completed_runs(existing, sha, opts.profile.name, opts.phase, settings)
        recorded, unwritten = _record_pending(copy.parent, opts, lb_path, sha, archs, seeds, settings, done, console)
        done.update(recorded)
        for arch, seed in ((a, s) for a in archs for s in seeds if (a, s) in done):
            console.print(f"skipping {path.name} {arch} seed {seed}: already in {lb_path} (ok, finished "
                          f"{done[(arch, seed)]}) for this file version; --force re-runs it")
        done.update({run: "its row is still unwritten" for run in unwritten})  # its result waits in row.json
        files.append(_File(path, copy, sha, done, bool(unwritten)))
    return files


def _plan_device(opts: EvaluateOptions) -> torch.device:
    """The device the runs use. On Ray, ``--device cuda`` is taken as given (the GPUs may be on
    other nodes than the driver)."""
    if opts.executor == "ray" and opts.device == "cuda":
        return torch.device("cuda")
    return resolve_device(opts.device)


def _device_label(device: torch.device, opts: EvaluateOptions) -> str:
    if opts.executor == "ray":
        return f"{device.type} on Ray workers"
    return device_name(device)


def executor_parallelism(opts: EvaluateOptions, n_jobs: int) -> int:
    """How many runs go at once (as far as the executor knows in advance)."""
    if opts.executor == "ray":
        return min(n_jobs, opts.jobs or n_jobs)
    return min(n_jobs, opts.jobs or 1)


def _make_executor(opts: EvaluateOptions, device: torch.device, sandbox, train, test, n_jobs: int,
                   console: Console) -> Executor:
    if opts.executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs Ray: pip install 'harness[ray]' (or pip install ray)")
        from harness.executors.ray_tasks import RayExecutor

        gpus = opts.gpus_per_run if opts.gpus_per_run is not None else (1.0 if device.type == "cuda" else 0.0)
        if gpus > 0 and device.type != "cuda":
            raise UsageError("--gpus-per-run needs --device cuda (or auto on a machine with a GPU)")
        console.print(f"executor: Ray, {gpus:g} GPU(s) per run, a lost task retried up to {opts.ray_retries} time(s)"
                      + (f", at most {opts.jobs} runs at once" if opts.jobs else ""))
        return RayExecutor(address=opts.ray_address, jobs=opts.jobs, gpus_per_run=gpus, cpus_per_run=opts.cpus_per_run,
                           retries=opts.ray_retries, data=(train, test), sandbox_name=sandbox.name,
                           log=lambda m: console.print(escape(m)))
    if (opts.jobs or 1) > 1 and n_jobs > 1:
        console.print(f"running up to {opts.jobs} runs at once")
        return LocalExecutor(jobs=opts.jobs or 1, data_dir=opts.data_dir, sandbox_name=sandbox.name)
    return InlineExecutor(train=train, test=test, sandbox=sandbox)


def _append(lb_path: Path, row: LeaderboardRow, run_dir: Path, label: str, console: Console) -> bool:
    """Append ``row``; on failure (a full disk, a changed file) keep it as ``row.json`` in the
    run directory, for the next ``harness evaluate`` to record without training again."""
    pending = run_dir / PENDING_ROW
    try:
        write_atomic(pending, row.model_dump_json().encode())
    except OSError:
        pass  # a full disk: the append below most likely fails too, and says so
    try:
        leaderboard.append_row(lb_path, row)
    except (LeaderboardError, OSError) as e:
        if row.status == "ok" and pending.exists():
            kept = (f"the row is kept in {pending}: run the same command again once that is fixed and it is "
                    "recorded without training again")
        else:
            kept = "the run will be run again by the same command"
        console.print(f"[red]could not write the row of {escape(label)} to {lb_path}:[/] {escape(str(e))}\n  {kept}")
        return False
    pending.unlink(missing_ok=True)
    return True


def _record_pending(eval_dir: Path, opts: EvaluateOptions, lb_path: Path, sha: str, archs, seeds, settings: dict,
                    done: dict, console: Console) -> tuple[dict[tuple[str, int], str], set[tuple[str, int]]]:
    """Append the ok rows that an earlier evaluation of this file finished but could not write.
    Returns ``({(arch, seed): finished_at} recorded now, {(arch, seed)} still unwritten)``; an
    unwritten one keeps its ``row.json`` and is not trained again."""
    recorded: dict[tuple[str, int], str] = {}
    unwritten: set[tuple[str, int]] = set()
    if opts.force:
        return recorded, unwritten
    for arch, seed in ((a, s) for a in archs for s in seeds if (a, s) not in done):
        pending = eval_dir / opts.phase / f"{arch}-seed{seed}" / PENDING_ROW
        try:
            row = LeaderboardRow.model_validate_json(pending.read_text())
        except (OSError, ValueError):
            continue
        same = (row.submission_sha256, row.kind, row.profile, row.phase, row.arch, row.seed, row.status) == (
            sha, opts.kind, opts.profile.name, opts.phase, arch, seed, "ok") and all(
            getattr(row, k) == v for k, v in settings.items())
        if not same:
            continue
        if _append(lb_path, row, pending.parent, f"{row.submission} {arch} seed {seed}", console):
            console.print(f"recorded {row.submission} {arch} seed {seed} in {lb_path}: the run finished at "
                          f"{row.finished_at} but its row could not be written then")
            recorded[(arch, seed)] = row.finished_at
        else:
            unwritten.add((arch, seed))
    return recorded, unwritten


def completed_runs(rows, sha: str, profile: str, phase: str, settings: dict) -> dict[tuple[str, int], str]:
    """``{(arch, seed): finished_at}`` of this file version, profile, phase and protocol settings
    (precision, compile, deterministic) whose latest attempt is ok: the rule the standings count by
    (a seed whose latest attempt failed is run again)."""
    mine = rows[(rows["submission_sha256"] == sha) & (rows["profile"] == profile) & (rows["phase"] == phase)]
    for column, value in settings.items():
        mine = mine[mine[column].astype(str).str.lower() == str(value).lower()]
    latest = mine.sort_values("finished_at", kind="stable").groupby(["arch", "seed"], sort=False).tail(1)
    ok = latest[latest["status"] == "ok"]
    return {(str(a), int(s)): str(t) for a, s, t in zip(ok["arch"], ok["seed"], ok["finished_at"])}


def _standing(console: Console, lb_path: Path, profile: Profile, phase: Phase, shas: Collection[str]) -> None:
    """These file versions against the baselines already in the leaderboard (same profile and phase)."""
    from harness import report

    rep = report.build(leaderboard.read_rows(lb_path), phase, profile.name)
    mine = [e for e in rep.entries if e.sha256 in shas]
    others = [e for e in rep.entries if e.kind == "baseline" and e.sha256 not in shas]
    if not mine:
        return
    if not others:
        console.print(f"no baselines in {lb_path} for profile {profile.name} yet: "
                      f"`harness baselines --profile {profile.name}` adds them")
    rep = dataclasses.replace(rep, entries=mine + others, references=[])
    console.print(f"standing in {lb_path} (profile {profile.name}, phase {phase}):")
    report.render_table(rep, console, highlight=shas)


def _row(spec: RunSpec, result: RunResult, run_id: str) -> LeaderboardRow:
    return LeaderboardRow(
        finished_at=utc_now(), submission=spec.submission, submission_sha256=spec.submission_sha256,
        kind=spec.kind, profile=spec.profile.name, phase=spec.phase, arch=spec.arch, seed=spec.seed,
        epochs=spec.profile.epochs, best_fine_acc=result.best_fine_acc, best_epoch=result.best_epoch,
        final_fine_acc=result.final_fine_acc, best_coarse_acc=result.best_coarse_acc,
        wall_seconds=round(result.wall_seconds, 2), device=_recorded_device(spec, result), precision=spec.precision,
        channels_last=spec.channels_last, compile=spec.compile, deterministic=spec.deterministic,
        torch_version=torch.__version__, harness_version=harness_version(),
        harness_commit=harness_commit(), sandbox=spec.sandbox, run_id=run_id, status=result.status,
    )


def _recorded_device(spec: RunSpec, result: RunResult) -> str:
    """The device's name as the run reported it; for a run lost before it reported, the driver's
    view of the device (a Ray driver without a GPU cannot name the worker's)."""
    if result.device:
        return result.device
    if spec.device.startswith("cuda") and not torch.cuda.is_available():
        return "cuda"
    return device_name(torch.device(spec.device))


def _summary(console: Console, results: list[tuple[RunSpec, RunResult, bool]], lb_path: Path, *,
             several: bool = False) -> None:
    table = Table(title="results", title_justify="left")
    cols = (("submission",) if several else ()) + (
        "arch", "seed", "status", "best fine acc", "best epoch", "final fine acc", "best coarse acc", "time")
    for col in cols:
        table.add_column(col, justify="left" if col in ("submission", "arch", "status") else "right")
    for spec, r, _ in results:
        fmt = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
        status = "[green]ok[/]" if r.status == "ok" else "[red]failed[/]"
        table.add_row(*((spec.submission,) if several else ()), spec.arch, str(spec.seed), status,
                      fmt(r.best_fine_acc), "" if r.best_epoch is None else str(r.best_epoch),
                      fmt(r.final_fine_acc), fmt(r.best_coarse_acc), f"{r.wall_seconds:.0f} s")
    console.print(table)
    unwritten = sum(not written for _, _, written in results)
    console.print(f"appended {len(results) - unwritten} row(s) to {lb_path}"
                  + (f"; [red]{unwritten} row(s) could not be written[/] (see above)" if unwritten else ""))
