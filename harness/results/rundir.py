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
:class:`RunDir`; the content of each file is defined by the model it holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.protocol import EntryKey, EpochMetrics, RunResult, RunSpec
from harness.util.fileio import private_dirs


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
        self.settings.write_text(spec.model_dump_json(indent=2))
        for stale in (self.failure, self.result, self.loss_state):
            stale.unlink(missing_ok=True)

    def restart_history(self, history: list[EpochMetrics]) -> None:
        """The run goes on from ``history`` (empty: from scratch): ``metrics.jsonl`` holds exactly
        those epochs (a line written after the checkpoint goes); a fresh start drops the worker log."""
        if history:
            self.metrics.write_text("".join(m.model_dump_json() + "\n" for m in history))
        else:
            for stale in (self.worker_log, self.metrics):
                stale.unlink(missing_ok=True)

    def restart_steps(self, first_step: int) -> None:
        """``steps.jsonl`` keeps the steps before ``first_step`` (where the run goes on from)."""
        kept = [line for line in self.read_steps() if line.get("step", first_step) < first_step]
        self.steps.write_text("".join(json.dumps(line, allow_nan=False) + "\n" for line in kept))

    def append_steps(self, lines: list[dict]) -> None:
        with open(self.steps, "a") as f:
            f.write("".join(json.dumps(line, allow_nan=False) + "\n" for line in lines))

    def append_metrics(self, metrics: EpochMetrics) -> None:
        with open(self.metrics, "a") as f:
            f.write(metrics.model_dump_json() + "\n")

    def write_loss_state(self, state: dict[str, list[float]]) -> None:
        self.loss_state.write_text(json.dumps(state, allow_nan=False))

    def write_failure(self, text: str) -> None:
        self.failure.write_text(text)

    def note_failure(self, spec: RunSpec, reason: str) -> None:
        """Make ``failure.txt`` say ``reason``: kept when it already does (the trainer's own account,
        with more detail), else written (a run that failed before or outside its training)."""
        if reason in (self.read_failure() or ""):
            return
        private_dirs(self.path)
        self.write_failure(f"{spec.submission} failed on {spec.arch}, seed {spec.seed}:\n{reason}\n")

    def write_result(self, result: RunResult) -> None:
        self.result.write_text(result.model_dump_json(indent=2))

    # ---------------------------------------------------------------- readers

    def read_metrics(self) -> list[dict]:
        """The epochs' metrics as dicts; empty when the file is absent or unreadable."""
        try:
            return [json.loads(line) for line in self.metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, ValueError):
            return []

    def read_steps(self) -> list[dict]:
        """The logged steps as dicts (:mod:`harness.training.steplog`); empty when absent or unreadable."""
        try:
            return [json.loads(line) for line in self.steps.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, ValueError):
            return []

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
