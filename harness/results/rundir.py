"""The run directories' layout: the one place that names a path or a file under ``--runs-dir``.

::

    <runs>/<profile>/<kind>/<stem>-<sha256[:12]>/
                                               EvalDir: one entry's file version (kind: submission
                                               or baseline; stem: the entry's name), one profile
        submission.py                          the copy that is hashed, checked and run
        check.log                              the worker's output during the interface check
        <phase>/<arch>-seed<seed>[-settings]/  RunDir: one run (other settings: another directory)
            settings.json                      its RunSpec
            metrics.jsonl                      one EpochMetrics per line, the epochs the run has
            steps.jsonl                        every N-th step: the loss weights and the module's
                                               scalars() (harness.training.steplog)
            worker.log                         the loss worker's output (capped)
            loss_state.json                    the loss module's final parameters, buffers, plain numbers
            result.json                        its RunResult
            failure.txt                        why it failed (only when it did)
            row.json                           its leaderboard row, while that row is unwritten
            checkpoint/                        per-epoch checkpoints (harness.training.checkpoint)

A run's id in the leaderboard (``run_id``) is its directory relative to ``<runs>``. Writers
and readers (trainer, recorder, report, checkpointer) go through :class:`EvalDir` and
:class:`RunDir`; the content of each file is defined by the model it holds. Every file is written
through :mod:`harness.util.fileio`: whole files atomically, the ``.jsonl`` logs by whole appended
lines; their readers skip a line a crash tore and keep the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.protocol import EntryKey, EpochMetrics, RunResult, RunSpec
from harness.util.fileio import append_text, json_lines, private_dirs, read_json_lines, write_atomic


@dataclass(frozen=True)
class RunDir:
    """One run's directory; nothing is created until :meth:`start`."""

    path: Path

    @classmethod
    def from_id(cls, runs_dir: Path, run_id: str) -> RunDir:
        return cls(Path(runs_dir) / run_id)

    def run_id(self, runs_dir: Path) -> str:
        return str(self.path.relative_to(runs_dir))

    settings = property(lambda self: self.path / "settings.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    steps = property(lambda self: self.path / "steps.jsonl")
    worker_log = property(lambda self: self.path / "worker.log")
    loss_state = property(lambda self: self.path / "loss_state.json")
    result = property(lambda self: self.path / "result.json")
    failure = property(lambda self: self.path / "failure.txt")
    pending_row = property(lambda self: self.path / "row.json")
    checkpoint = property(lambda self: self.path / "checkpoint")

    # ---------------------------------------------------------------- the trainer's side

    def start(self, spec: RunSpec) -> None:
        """Create the directory, record ``spec`` and drop what a previous attempt concluded."""
        private_dirs(self.path)
        write_atomic(self.settings, spec.model_dump_json(indent=2).encode())
        for stale in (self.failure, self.result, self.loss_state):
            stale.unlink(missing_ok=True)

    def restart_history(self, history: list[EpochMetrics]) -> None:
        """The run goes on from ``history`` (empty: from scratch): ``metrics.jsonl`` holds exactly
        those epochs (a line written after the checkpoint goes); a fresh start drops the worker log."""
        if history:
            write_atomic(self.metrics, "".join(m.model_dump_json() + "\n" for m in history).encode())
        else:
            for stale in (self.worker_log, self.metrics):
                stale.unlink(missing_ok=True)

    def restart_steps(self, first_step: int) -> None:
        """``steps.jsonl`` keeps every step before ``first_step`` (where the run goes on from), a line
        torn by the interruption aside."""
        kept = [line for line in self.read_steps() if line.get("step", first_step) < first_step]
        write_atomic(self.steps, json_lines(kept).encode())

    def append_steps(self, lines: list[dict]) -> None:
        if lines:
            append_text(self.steps, json_lines(lines))

    def append_metrics(self, metrics: EpochMetrics) -> None:
        append_text(self.metrics, metrics.model_dump_json() + "\n")

    def write_loss_state(self, state: dict[str, list[float]]) -> None:
        write_atomic(self.loss_state, json.dumps(state, allow_nan=False).encode())

    def write_failure(self, text: str) -> None:
        write_atomic(self.failure, text.encode())

    def note_failure(self, spec: RunSpec, reason: str) -> None:
        """Make ``failure.txt`` say ``reason``: kept when it already does (the trainer's own account,
        with more detail), else written (a run that failed before or outside its training)."""
        if reason in (self.read_failure() or ""):
            return
        private_dirs(self.path)
        self.write_failure(f"{spec.submission} failed on {spec.arch}, seed {spec.seed}:\n{reason}\n")

    def write_result(self, result: RunResult) -> None:
        write_atomic(self.result, result.model_dump_json(indent=2).encode())

    # ---------------------------------------------------------------- readers

    def read_metrics(self) -> list[dict]:
        """The epochs' metrics as dicts; empty when the file is absent or unreadable, without a line a
        crash tore (:func:`~harness.util.fileio.read_json_lines`)."""
        return read_json_lines(self.metrics)

    def read_steps(self) -> list[dict]:
        """The logged steps as dicts (:mod:`harness.training.steplog`); empty when absent or unreadable,
        without a line a crash tore."""
        return read_json_lines(self.steps)

    def read_failure(self) -> str | None:
        try:
            return self.failure.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None


@dataclass(frozen=True)
class EvalDir:
    """One entry's file version's directory under one profile: a baseline and a submission, or two
    entries with byte-identical files, never share one."""

    path: Path

    @classmethod
    def of(cls, runs_dir: Path, profile: str, entry: EntryKey, sha256: str) -> EvalDir:
        return cls(Path(runs_dir) / profile / entry.kind / f"{entry.name.removesuffix('.py')}-{sha256[:12]}")

    submission = property(lambda self: self.path / "submission.py")
    check_log = property(lambda self: self.path / "check.log")

    def run(self, spec: RunSpec) -> RunDir:
        """The run's directory (one per :class:`~harness.protocol.RunKey`; the entry and file version
        are this directory's): ``<phase>/<arch>-seed<seed>``, with the settings that are not the
        protocol's own appended (``-independent``, ``-bf16``, ``-compile``, ``-deterministic``:
        :attr:`~harness.protocol.RunSettings.dir_suffix`), so that runs with other settings never share
        a checkpoint, a pending row or a metrics file."""
        parts = [f"{spec.arch}-seed{spec.seed}", *spec.settings.dir_suffix]
        return RunDir(self.path / spec.phase / "-".join(parts))
