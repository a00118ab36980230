"""Planning an evaluation: given its options (:mod:`harness.evaluate.options`), which files,
architectures and seeds it trains, which of those runs are already done, where the runs go, and
which executor carries them out.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from harness.errors import SubmissionRejected, UsageError
from harness.evaluate.names import baseline_names, check_name, place_of, reserved_problem
from harness.evaluate.options import EvaluateOptions
from harness.executors import Executor, Job, units
from harness.isolation.check import directory_message, read_submission, static_check
from harness.protocol import HIDDEN_ARCHS, ArchSource, EntryKey, LeaderboardRow, Precision, Profile, RunSpec
from harness.results.record import Recorder
from harness.results.rundir import EvalDir
from harness.util.fileio import private_dirs, sha256_bytes, sha256_file, write_atomic
from harness.util.provenance import device_name


def planned_archs(opts: EvaluateOptions) -> tuple[str, ...]:
    """The requested architectures, else the profile's plus the hidden ones in the final phase.
    Loads the hidden architectures when the plan needs them."""
    from harness.training.models import get_arch, load_hidden_archs

    archs = tuple(dict.fromkeys(opts.archs)) or (opts.profile.archs + (HIDDEN_ARCHS if opts.phase == "final" else ()))
    if any(a in HIDDEN_ARCHS for a in archs):
        if opts.phase != "final":
            raise UsageError("the hidden architectures are evaluated only with --phase final")
        load_hidden_archs(opts.hidden_dir)
    for a in archs:
        get_arch(a)  # a clear error for an unknown name, before anything trains
    return archs


def planned_seeds(opts: EvaluateOptions) -> tuple[int, ...]:
    return tuple(dict.fromkeys(opts.seeds)) or opts.profile.seeds  # a repeated --seed runs once


def plan_device(opts: EvaluateOptions) -> torch.device:
    """The device the runs use. On Ray, ``--device cuda`` is taken as given (the GPUs may be on
    other nodes than the driver)."""
    import torch

    from harness.training.device import resolve_device

    if opts.executor == "ray" and opts.device == "cuda":
        return torch.device("cuda")
    return resolve_device(opts.device)


def device_label(device: torch.device, opts: EvaluateOptions) -> str:

    return f"{device.type} on Ray workers" if opts.executor == "ray" else device_name(device)


def prepare_submission(path: Path, runs_dir: Path, profile: Profile, entry: EntryKey) -> tuple[EvalDir, str]:
    """Statically check ``path`` and copy it into the evaluation directory of ``entry``; that copy is
    what is hashed, checked and run, so editing the file while an evaluation runs changes nothing.
    Returns the directory and the sha256. Raises ``SubmissionRejected``."""
    data = read_submission(path)  # read once: what is hashed is what is checked and copied
    static_check(path, data)
    sha = sha256_bytes(data)
    eval_dir = EvalDir.of(runs_dir, profile.name, entry, sha)
    private_dirs(eval_dir.path)
    copy = eval_dir.submission
    if not copy.exists() or sha256_file(copy) != sha:
        write_atomic(copy, data)
    return eval_dir, sha


@dataclass
class PlannedFile:
    """One submission file of the evaluation and what is known of its runs before training."""

    path: Path
    entry: EntryKey
    place: str  # where the file is, as the leaderboard records it (harness.evaluate.names.place_of)
    eval_dir: EvalDir
    sha: str
    skipped: dict[tuple[str, int], str] = field(default_factory=dict)  # ok in the leaderboard: finished_at
    pending: list[RunSpec] = field(default_factory=list)  # runs with a row in row.json, appended after the check
    recovered: list[LeaderboardRow] = field(default_factory=list)  # pending rows appended now
    unwritten: list[tuple[LeaderboardRow, str, Path]] = field(default_factory=list)  # still failing: row.json

    def done(self) -> set[tuple[str, int]]:
        """Runs not to train: ok in the leaderboard, or finished with a row waiting in row.json."""
        return (
            set(self.skipped)
            | {(s.arch, s.seed) for s in self.pending}
            | {(r.arch, r.seed) for r in self.recovered}
            | {(r.arch, r.seed) for r, _, _ in self.unwritten}
        )

    def recover(self, recorder: Recorder) -> None:
        """Append the rows an earlier evaluation left pending (:attr:`pending`): called once the file
        has passed its check, never before, so that a file refused now adds no row."""
        for spec in self.pending:
            row, problem = recorder.recover(self.eval_dir, spec)
            if row is not None and problem is None:
                self.recovered.append(row)
            elif row is not None and problem is not None:
                self.unwritten.append((row, problem, self.eval_dir.run(spec).pending_row))
        self.pending = []


def spec_for(
    f: PlannedFile, opts: EvaluateOptions, arch: str, seed: int, device: str, sandbox: str, precision: Precision
) -> RunSpec:
    return RunSpec(
        submission=f.entry.name,
        submission_sha256=f.sha,
        kind=f.entry.kind,
        submission_path=f.place,
        profile=opts.profile,
        phase=opts.phase,
        topology=opts.topology,
        arch=arch,
        seed=seed,
        device=device,
        sandbox=sandbox,
        precision=precision,
        compile=opts.compile,
        deterministic=opts.deterministic,
        arch_source=_arch_source(arch),
    )


def _arch_source(arch: str) -> ArchSource | None:
    """The file a hidden architecture was loaded from, for the processes that train it."""
    from harness.training.models import hidden_source

    source = hidden_source(arch)
    return ArchSource(path=source[0], sha256=source[1]) if source else None


def entry_of(
    path: Path, opts: EvaluateOptions, existing: pd.DataFrame, planned: list[PlannedFile]
) -> tuple[EntryKey, str] | None:
    """The entry ``path`` is evaluated as, and its place; None when the same file is already planned.
    Raises ``SubmissionRejected`` for a name that breaks the rule (:mod:`harness.evaluate.names`), a baseline's
    name taken by a submission, or a name that already belongs to a file in another place."""
    if path.is_dir():
        raise SubmissionRejected(directory_message(path))
    name = opts.name or path.name
    reserved = (
        set()
        if opts.kind == "baseline"
        else baseline_names(opts.baselines_dir)
        | set(existing.loc[(existing["origin"] == "measured") & (existing["kind"] == "baseline"), "submission"])
    )
    check_name(name, f"--name {name}" if opts.name else str(path), option=bool(opts.name), reserved=reserved)
    if reserved:
        problem = reserved_problem(name, reserved)
        if problem:
            raise SubmissionRejected(f"{path}: {problem}")
    entry, place = EntryKey(kind=opts.kind, name=name), place_of(path, opts.leaderboard_path)
    if any(f.entry == entry and f.place == place for f in planned):
        return None
    mine = existing[
        (existing["origin"] == "measured") & (existing["kind"] == entry.kind) & (existing["submission"] == name)
    ]
    places = {p for p in mine["submission_path"] if p} | {f.place for f in planned if f.entry == entry}
    if places and place not in places:
        where = ", ".join(sorted(places))
        raise SubmissionRejected(
            f"{path}: the entry {name} in {opts.leaderboard_path} is the file at {where}; this is another file "
            f"({place}). Two files of the same name are never versions of one entry: rename this one, or evaluate "
            f"it under another name with --name (e.g. --name {suggest_other(path, name)}). To add a version of "
            f"{name}, edit the file at {where}"
        )
    return entry, place


def suggest_other(path: Path, name: str) -> str:
    """A name for a second file called ``name``: its directory's name before it, when that helps."""
    parent = Path(os.path.abspath(path)).parent.name
    from harness.evaluate.names import suggest_name

    return suggest_name(f"{parent}_{name}" if parent else f"other_{name}")


def plan_files(
    paths: list[Path],
    opts: EvaluateOptions,
    existing: pd.DataFrame,
    archs: tuple[str, ...],
    seeds: tuple[int, ...],
    precision: Precision,
    recorder: Recorder,
    rejected: Callable[[Path, SubmissionRejected], None],
    repeated: Callable[[Path], None],
) -> list[PlannedFile]:
    """Name, statically check and copy each file (a rejected one goes to ``rejected``, a file listed
    twice to ``repeated``), find the rows an earlier evaluation left pending (recorded after the check:
    :meth:`PlannedFile.recover`) and the runs already done (none with ``--force``). Each file is its
    own entry: a byte-identical copy of another entry's file is evaluated again under its own name."""
    if opts.name and len(paths) > 1:
        raise UsageError(f"--name names one entry; {len(paths)} files were given")
    files: list[PlannedFile] = []
    for path in paths:
        try:
            named = entry_of(path, opts, existing, files)
            if named is None:
                repeated(path)
                continue
            entry, place = named
            eval_dir, sha = prepare_submission(path, opts.runs_dir, opts.profile, entry)
        except SubmissionRejected as e:
            rejected(path, e)
            continue
        except (OSError, ValueError, RecursionError, MemoryError) as e:  # anything odd about one file is its own
            rejected(path, SubmissionRejected(f"{path}: could not be prepared ({type(e).__name__}: {e})"))
            continue
        f = PlannedFile(path, entry, place, eval_dir, sha)
        if not opts.force:
            series = spec_for(f, opts, "-", 0, "cpu", "none", precision).key.series
            from harness.results.record import completed_runs

            done = completed_runs(existing, series)
            f.skipped = {run: t for run, t in done.items() if run in {(a, s) for a in archs for s in seeds}}
            for arch, seed in ((a, s) for a in archs for s in seeds if (a, s) not in done):
                spec = spec_for(f, opts, arch, seed, "cpu", "none", precision)
                if recorder.pending(eval_dir, spec) is not None:
                    f.pending.append(spec)
        files.append(f)
    return files


def plan_jobs(
    files: list[PlannedFile],
    opts: EvaluateOptions,
    archs: tuple[str, ...],
    seeds: tuple[int, ...],
    device: torch.device,
    sandbox: str,
    precision: Precision,
) -> list[Job]:
    """Every (file, architecture, seed) run not done yet, in that order; the seeds of one (file,
    architecture) marked ``fused`` when they are to be trained as one model (:func:`fuses`)."""
    from harness.training.fused_run import fusable

    jobs = []
    for f in files:
        for arch in archs:
            specs = [
                spec_for(f, opts, arch, seed, str(device), sandbox, precision)
                for seed in seeds
                if (arch, seed) not in f.done()
            ]
            if fuses(opts, device) and fusable(specs):
                specs = [spec.model_copy(update={"fused": True}) for spec in specs]
            jobs += [Job(spec, f.eval_dir.run(spec), f.eval_dir.submission) for spec in specs]
    return jobs


def fuses(opts: EvaluateOptions, device: torch.device) -> bool:
    """Whether the seeds of a run are trained as one model: ``--fuse``; by default on CUDA, where one
    small run leaves the GPU mostly idle and fusing multiplies the work of every kernel launch, and
    not on a CPU, which one run already keeps busy. Local executor only."""
    if opts.executor == "ray":
        return False
    return opts.fuse if opts.fuse is not None else device.type == "cuda"


def parallelism(opts: EvaluateOptions, device: torch.device, jobs: list[Job]) -> int:
    """How many runs go at once (as far as the executor knows in advance)."""
    if opts.executor == "ray":
        return min(len(jobs), opts.jobs or len(jobs))
    per_unit = len(jobs) / max(1, len(units(jobs)))
    return min(len(jobs), round(local_jobs(opts, device, len(units(jobs))) * per_unit))


def local_jobs(opts: EvaluateOptions, device: torch.device, n_units: int) -> int:
    """Units (a run, or fused seeds) at once with the local executor: ``--jobs``; by default as many
    as the GPU memory holds on CUDA (all runs of an evaluation share the GPU), one on a CPU."""
    from harness.training.device import gpu_slots

    return opts.jobs or (gpu_slots(n_units) if device.type == "cuda" else 1)


def make_executor(
    opts: EvaluateOptions, device: torch.device, sandbox, data, jobs: list[Job], say: Callable[[str], None]
) -> Executor:
    """The executor of ``opts``; ``say`` tells the user which (plain text)."""
    if opts.executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs Ray: pip install 'harness[ray]' (or pip install ray)")
        from harness.executors.ray_tasks import RayExecutor

        gpus = opts.gpus_per_run if opts.gpus_per_run is not None else (1.0 if device.type == "cuda" else 0.0)
        if gpus > 0 and device.type != "cuda":
            raise UsageError("--gpus-per-run needs --device cuda (or auto on a machine with a GPU)")
        say(
            f"executor: Ray, {gpus:g} GPU(s) per run, a lost task retried up to {opts.ray_retries} time(s)"
            + (f", at most {opts.jobs} runs at once" if opts.jobs else "")
        )
        return RayExecutor(
            address=opts.ray_address,
            jobs=opts.jobs,
            gpus_per_run=gpus,
            cpus_per_run=opts.cpus_per_run,
            retries=opts.ray_retries,
            data=data,
            sandbox_name=sandbox.name,
            log=say,
        )
    from harness.training.device import mps_running

    n_units = len(units(jobs))
    fused = sum(job.spec.fused for job in jobs)
    if fused:
        say(f"{fused} runs trained fused: the seeds of each architecture as one model (--no-fuse: one by one)")
    at_once = local_jobs(opts, device, n_units)
    if at_once > 1 and n_units > 1:
        from harness.executors.local import LocalExecutor

        where = ""
        if device.type == "cuda":
            where = " sharing the GPU" + (
                " (CUDA MPS runs their kernels concurrently)"
                if mps_running()
                else " (without CUDA MPS they take turns on it: start it with nvidia-cuda-mps-control -d)"
            )
        say(f"running up to {at_once} {'units' if fused else 'runs'} at once{where}")
        return LocalExecutor(jobs=at_once, data_dir=opts.data_dir, sandbox_name=sandbox.name)
    from harness.executors.inline import InlineExecutor

    return InlineExecutor(data=data, sandbox=sandbox)
