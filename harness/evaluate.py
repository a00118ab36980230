"""``harness evaluate``: plan -> check -> run -> record -> present, for one or several files.

Each file is statically checked and copied (:mod:`harness.plan`), its interface checked in the
sandbox, then every (file, architecture, seed) run not done yet is carried out by one executor
(:mod:`harness.executors`); each run's row is appended as the run ends
(:mod:`harness.leaderboard.record`) and the results are shown against the baselines
(:mod:`harness.report.console`). Each run is independent: a failed run is reported (terminal,
``failure.txt``, a ``failed`` row) and the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness import leaderboard
from harness.errors import ExitCode, SubmissionRejected
from harness.executors import Job
from harness.isolation.check import interface_check
from harness.isolation.sandbox import resolve_sandbox
from harness.leaderboard.record import Recorded, Recorder
from harness.plan import (
    EvaluateOptions,
    device_label,
    make_executor,
    parallelism,
    plan_device,
    plan_files,
    plan_jobs,
    planned_archs,
    planned_seeds,
)
from harness.progress import EvaluationProgress
from harness.protocol import RunResult
from harness.report import console as show
from harness.training.data import load_profile_data
from harness.training.device import resolve_precision


def evaluate(paths: Path | Sequence[Path], opts: EvaluateOptions, console: Console) -> ExitCode:
    """Evaluate one or several submission files, all their runs scheduled together. Exit code per
    file: OK, RUN_FAILED (a run failed or a row could not be written), REJECTED; the worst is returned.

    With a single file, a bad file or interface raises ``SubmissionRejected`` before training;
    with several, a rejected file is reported and the others go on. Setup errors raise other
    :class:`HarnessError` subclasses.
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    single = len(paths) == 1
    profile, lb_path = opts.profile, opts.leaderboard_path
    existing = leaderboard.read_rows(lb_path)  # refuses a foreign CSV before hours of training
    archs, seeds = planned_archs(opts), planned_seeds(opts)
    device = plan_device(opts)
    precision = resolve_precision(opts.precision or profile.precision, device)
    recorder = Recorder(lb_path, opts.runs_dir)
    codes: dict[str, ExitCode] = {}  # per file as given

    def rejected(path: Path, e: SubmissionRejected) -> None:
        if single:
            raise e
        show.rejected(console, e)
        codes[str(path)] = ExitCode.REJECTED

    # plan: which files, which of their runs are done already
    files = plan_files(paths, opts, existing, archs, seeds, precision, recorder, rejected,
                       lambda path: console.print(f"{escape(str(path))}: listed twice; evaluated once"))
    versions = {(f.entry.kind, f.entry.name, f.sha) for f in files}
    for f in files:
        show.planned_file(console, f, lb_path)
        codes[str(f.path)] = ExitCode.RUN_FAILED if f.unwritten else ExitCode.OK
    todo = [f for f in files if len(f.done()) < len(archs) * len(seeds)]
    for f in files:
        if f not in todo:
            console.print(f"nothing to run: every run of {escape(str(f.entry))} (sha256 {f.sha[:12]}) is already in "
                          f"{escape(str(lb_path))}")
    if not todo:
        show.standing(console, lb_path, profile, opts.phase, versions)
        return max(codes.values(), default=ExitCode.OK)

    # check: each file's interface, in the sandbox
    sandbox, warning = resolve_sandbox(opts.sandbox, allow_fallback=profile.allow_unsandboxed_fallback)
    if warning:
        show.warning(console, warning)
    checked = []
    for f in todo:
        console.print(f"checking {escape(str(f.path))} (sha256 {f.sha[:12]}) in sandbox '{sandbox.name}'")
        try:
            report = interface_check(f.eval_dir.submission, sandbox=sandbox, log_path=f.eval_dir.check_log,
                                     start_timeout=profile.worker_start_timeout_s,
                                     call_timeout=profile.worker_call_timeout_s, shown_as=f.path)
        except SubmissionRejected as e:
            rejected(f.path, e)
            continue
        show.capabilities(console, report, profile)
        checked.append(f)
    if not checked:
        return max(codes.values(), default=ExitCode.OK)

    # run: every run not done yet, by one executor; each row recorded as its run ends
    data = load_profile_data(profile, opts.data_dir)
    jobs = plan_jobs(checked, opts, archs, seeds, device, sandbox.name, precision)
    console.print(f"profile '{profile.name}': {profile.description}")
    console.print(f"data: {len(data[0]):,} train / {len(data[1]):,} test images; device {device_label(device, opts)}; "
                  f"runs: {', '.join(archs)} x seeds {', '.join(map(str, seeds))}"
                  + (f" x {len(checked)} files" if len(checked) > 1 else ""))
    console.print(f"settings: precision {precision}, compile {opts.compile}, deterministic {opts.deterministic}, "
                  f"topology {opts.topology}")
    if opts.topology != "shared":
        show.topology(console, opts.topology, archs)
    given = {f.entry: str(f.path) for f in files}  # the file each entry was given as
    records: list[Recorded] = []

    def on_result(job: Job, result: RunResult) -> None:
        rec = recorder.record(job.spec, result, job.run_dir)
        show.recorded(console, rec, lb_path, (job.submission, Path(given[job.spec.entry])))
        records.append(rec)
        name = given[job.spec.entry]
        if not (rec.written and result.status == "ok"):
            codes[name] = max(codes[name], ExitCode.RUN_FAILED)

    executor = make_executor(opts, device, sandbox, data, len(jobs), say=lambda m: console.print(escape(m)))
    with EvaluationProgress(console, [j.spec for j in jobs], parallel=parallelism(opts, len(jobs))) as progress:
        executor.run(jobs, progress, on_result)

    # present: this evaluation's results, and where the files stand
    show.results(console, records, lb_path, several=len(checked) > 1)
    show.standing(console, lb_path, profile, opts.phase, versions)
    bad = sorted(name for name, code in codes.items() if code)
    if len(paths) > 1 and bad:
        console.print(f"[red]not ok:[/] {', '.join(bad)}")
    return max(codes.values(), default=ExitCode.OK)
