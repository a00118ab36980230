"""``harness evaluate``: plan -> check -> run -> record -> present, for one or several files.

Each file is statically checked and copied (:mod:`harness.evaluate.plan`), its interface checked in the
sandbox, then every (file, architecture, seed) run not done yet is carried out by one executor
(:mod:`harness.executors`); each run's row is appended as the run ends
(:mod:`harness.results.record`) and the results are shown against the baselines
(:mod:`harness.report.console`). Each run is independent: a failed run is reported (terminal,
``failure.txt``, a ``failed`` row) and the others go on.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness import results as leaderboard
from harness.errors import ExitCode, SubmissionRejected
from harness.evaluate.plan import (
    EvaluateOptions,
    PlannedFile,
    device_label,
    make_executor,
    parallelism,
    plan_device,
    plan_files,
    plan_jobs,
    planned_archs,
    planned_seeds,
)
from harness.executors import Job
from harness.isolation.check import CheckReport, interface_check
from harness.isolation.sandbox import Sandbox, resolve_sandbox
from harness.protocol import RunResult, VersionKey
from harness.report import console as show
from harness.report.progress import EvaluationProgress
from harness.results.record import Recorded, Recorder
from harness.training.data import load_profile_data
from harness.training.device import prepare_determinism, resolve_precision


def evaluate(paths: Path | Sequence[Path], opts: EvaluateOptions, console: Console) -> ExitCode:
    """Evaluate one or several submission files, all their runs scheduled together. Exit code per
    file: OK, RUN_FAILED (a run failed or a row could not be written), REJECTED; the worst is returned.

    With a single file, a bad file or interface raises ``SubmissionRejected`` before training;
    with several, a rejected file is reported and the others go on. Setup errors raise other
    :class:`HarnessError` subclasses.
    """
    return run_evaluation(paths, opts, console).code


@dataclass(frozen=True)
class Outcome:
    """What one evaluation did: its exit code, the rows it recorded (runs that ended now), the file
    versions it covered and the leaderboard it wrote to; the files it
    planned (with the runs it did not train: :class:`~harness.evaluate.plan.PlannedFile`), the interface check's
    report of each file it checked (by the file's path as given) and the files it rejected, with why."""

    code: ExitCode
    records: list[Recorded]
    versions: Collection[VersionKey]
    leaderboard: Path
    files: list[PlannedFile] = field(default_factory=list)
    checks: dict[str, CheckReport] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    sandbox: str | None = None  # the checks' and runs' (None: nothing was left to run)


def run_evaluation(paths: Path | Sequence[Path], opts: EvaluateOptions, console: Console) -> Outcome:
    """:func:`evaluate`, returning its :class:`Outcome`: plan -> check -> run -> record -> present.
    A deterministic evaluation's environment is set first, before anything can start CUDA (every
    caller comes through here: the CLI, :func:`harness.api.evaluate_files`)."""
    prepare_determinism(opts.deterministic)
    ev = Evaluation([Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths], opts, console)
    files = ev.plan()
    todo = ev.not_done(files)
    records: list[Recorded] = []
    waiting = [f for f in files if f in todo or f.pending]  # a pending row is appended once its file passed the check
    if waiting:
        sandbox = ev.sandbox()
        checked = ev.check(waiting, sandbox)
        if not checked:
            return ev.outcome(records, files)
        ev.recover(checked)
        todo = [f for f in checked if f in todo]
        if todo:
            records = ev.run(todo, sandbox)
            ev.present(records, several=len(todo) > 1)
    ev.standing(files)
    return ev.outcome(records, files)


class Evaluation:
    """One ``harness evaluate`` (or ``harness baselines``): its steps in the order they run, and the
    exit code of each file as given."""

    def __init__(self, paths: list[Path], opts: EvaluateOptions, console: Console) -> None:
        self.paths, self.opts, self.console = paths, opts, console
        self.lb_path = opts.leaderboard_path
        # refuses a foreign CSV, or one of an older schema, before hours of training
        self.existing = leaderboard.read_rows(self.lb_path, appending=True)
        self.archs, self.seeds = planned_archs(opts), planned_seeds(opts)
        self.device = plan_device(opts)
        self.precision = resolve_precision(opts.precision or opts.profile.precision, self.device)
        self.recorder = Recorder(self.lb_path, opts.runs_dir)
        self.codes: dict[str, ExitCode] = {}  # per file as given
        self.reports: dict[str, CheckReport] = {}  # the interface check's, per file as given
        self.rejections: dict[str, str] = {}  # why, per file as given
        self.sandbox_name: str | None = None

    def rejected(self, path: Path, e: SubmissionRejected) -> None:
        """A file is refused: with one file that is the command's error; with several, the others go on."""
        if len(self.paths) == 1:
            raise e
        show.rejected(self.console, e)
        self.codes[str(path)] = ExitCode.REJECTED
        self.rejections[str(path)] = str(e)

    def outcome(self, records: list[Recorded], files: list[PlannedFile]) -> Outcome:
        return Outcome(
            self.exit_code(),
            records,
            self.versions,
            self.lb_path,
            files,
            self.reports,
            self.rejections,
            self.sandbox_name,
        )

    def plan(self) -> list[PlannedFile]:
        """Name, check and copy each file; what each has done already."""
        files = plan_files(
            self.paths,
            self.opts,
            self.existing,
            self.archs,
            self.seeds,
            self.precision,
            self.recorder,
            self.rejected,
            lambda path: self.console.print(f"{escape(str(path))}: listed twice; evaluated once"),
        )
        self.versions = {VersionKey(entry=f.entry, sha256=f.sha) for f in files}
        for f in files:
            show.planned_file(self.console, f, self.lb_path)
            self.codes[str(f.path)] = ExitCode.OK
        return files

    def recover(self, files: list[PlannedFile]) -> None:
        """Append the rows an earlier evaluation of these files (checked now) left pending."""
        for f in files:
            f.recover(self.recorder)
            show.recovered(self.console, f, self.lb_path)
            if f.unwritten:
                self.codes[str(f.path)] = max(self.codes[str(f.path)], ExitCode.RUN_FAILED)

    def not_done(self, files: list[PlannedFile]) -> list[PlannedFile]:
        """The files with runs left to train."""
        todo = [f for f in files if len(f.done()) < len(self.archs) * len(self.seeds)]
        for f in files:
            if f not in todo:
                self.console.print(
                    f"nothing to run: every run of {escape(str(f.entry))} (sha256 {f.sha[:12]}) is "
                    f"already in {escape(str(self.lb_path))} (--force runs them again; `harness leaderboard "
                    f"--profile {self.opts.profile.name}` shows the board)"
                )
        return todo

    def sandbox(self) -> Sandbox:
        sandbox, warning = resolve_sandbox(
            self.opts.sandbox, allow_fallback=self.opts.profile.allow_unsandboxed_fallback
        )
        if warning:
            show.warning(self.console, warning)
        self.sandbox_name = sandbox.name
        return sandbox

    def check(self, files: list[PlannedFile], sandbox: Sandbox) -> list[PlannedFile]:
        """Each file's interface, in the sandbox; the files that pass."""
        checked = []
        for f in files:
            self.console.print(f"checking {escape(str(f.path))} (sha256 {f.sha[:12]}) in sandbox '{sandbox.name}'")
            profile = self.opts.profile
            try:
                report = interface_check(
                    f.eval_dir.submission,
                    sandbox=sandbox,
                    log_path=f.eval_dir.check_log,
                    start_timeout=profile.worker_start_timeout_s,
                    call_timeout=profile.worker_call_timeout_s,
                    shown_as=f.path,
                    total_epochs=profile.epochs,
                )
            except SubmissionRejected as e:
                self.rejected(f.path, e)
                continue
            show.capabilities(self.console, report, profile)
            self.reports[str(f.path)] = report
            checked.append(f)
        return checked

    def run(self, files: list[PlannedFile], sandbox: Sandbox) -> list[Recorded]:
        """Every run not done yet, by one executor; each row recorded as its run ends."""
        opts, console = self.opts, self.console
        data = load_profile_data(opts.profile, opts.data_dir)
        jobs = plan_jobs(files, opts, self.archs, self.seeds, self.device, sandbox.name, self.precision)
        show.run_plan(
            console, opts, data, self.archs, self.seeds, len(files), device_label(self.device, opts), self.precision
        )
        given = {f.entry: f.path for f in files}  # the file each entry was given as
        records: list[Recorded] = []

        def on_result(job: Job, result: RunResult) -> None:
            rec = self.recorder.record(job.spec, result, job.run_dir)
            show.recorded(console, rec, self.lb_path, (job.submission, given[job.spec.entry]))
            records.append(rec)
            if not (rec.written and result.status == "ok"):
                name = str(given[job.spec.entry])
                self.codes[name] = max(self.codes[name], ExitCode.RUN_FAILED)

        executor = make_executor(opts, self.device, sandbox, data, jobs, say=lambda m: console.print(escape(m)))
        parallel = parallelism(opts, self.device, jobs)
        with EvaluationProgress(console, [j.spec for j in jobs], parallel=parallel) as progress:
            executor.run(jobs, progress, on_result)
        return records

    def present(self, records: list[Recorded], *, several: bool) -> None:
        show.results(self.console, records, self.lb_path, several=several)

    def standing(self, files: list[PlannedFile]) -> None:
        show.standing(self.console, self.lb_path, self.opts.profile, self.opts.phase, self.versions)

    def exit_code(self) -> ExitCode:
        """The worst of the files' codes; with several files, the ones not ok are named."""
        bad = sorted(name for name, code in self.codes.items() if code)
        if len(self.paths) > 1 and bad:
            self.console.print(f"[red]not ok:[/] {escape(', '.join(bad))}")
        return max(self.codes.values(), default=ExitCode.OK)
