"""How finished runs become leaderboard rows: the row of a run, appending it without losing it, and
which runs a leaderboard already holds.

A row that cannot be appended (a full disk, a changed file) is kept as the run's ``row.json``
(:class:`~harness.results.rundir.RunDir`); the next evaluation of the same file version records it without
training again (:meth:`Recorder.recover`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.errors import LeaderboardError
from harness.protocol import SCHEMA_VERSION, LeaderboardRow, RunResult, RunSpec, SeriesKey
from harness.results.rundir import EvalDir, RunDir
from harness.results.store import append_row, latest_attempts, rows_of
from harness.util.fileio import write_atomic
from harness.util.provenance import device_name, harness_commit, harness_version, utc_now


def row_for(spec: RunSpec, result: RunResult, run_id: str) -> LeaderboardRow:
    """The leaderboard row of a finished run (ok or failed)."""
    import torch  # here, not at the top: a command that records no row (``check``) never loads torch

    return LeaderboardRow(
        finished_at=utc_now(),
        submission=spec.submission,
        submission_sha256=spec.submission_sha256,
        submission_path=spec.submission_path,
        kind=spec.kind,
        profile=spec.profile.name,
        arch=spec.arch,
        seed=spec.seed,
        epochs=spec.profile.epochs,
        best_fine_acc=result.best_fine_acc,
        best_epoch=result.best_epoch,
        final_fine_acc=result.final_fine_acc,
        best_coarse_acc=result.best_coarse_acc,
        wall_seconds=round(result.wall_seconds, 2),
        device=_recorded_device(spec, result),
        float32_math=result.float32_math,
        channels_last=spec.channels_last,
        torch_version=torch.__version__,
        harness_version=harness_version(),
        harness_commit=harness_commit(),
        sandbox=spec.sandbox,
        run_id=run_id,
        status=result.status,
        **spec.settings.model_dump(exclude={"profile"}),  # every setting is a column of its own name
    )


def _recorded_device(spec: RunSpec, result: RunResult) -> str:
    """The device's name as the run reported it; for a run lost before it reported, the driver's
    view of the device (a Ray driver without a GPU cannot name the worker's)."""
    if result.device:
        return result.device
    import torch

    if spec.device.startswith("cuda") and not torch.cuda.is_available():
        return "cuda"
    return device_name(torch.device(spec.device))


@dataclass(frozen=True)
class Recorded:
    """What became of one run's row. ``problem``: why it could not be appended; ``kept``: the
    ``row.json`` that holds it until the next evaluation records it (None: the run runs again)."""

    spec: RunSpec
    result: RunResult
    run: RunDir
    problem: str | None = None
    kept: Path | None = None

    @property
    def written(self) -> bool:
        return self.problem is None


class Recorder:
    """Appends the rows of one evaluation to the leaderboard at ``path``; the only writer of rows."""

    def __init__(self, path: Path, runs_dir: Path) -> None:
        self.path, self.runs_dir = Path(path), Path(runs_dir)

    def record(self, spec: RunSpec, result: RunResult, run: RunDir) -> Recorded:
        problem, kept = self._append(row_for(spec, result, run.run_id(self.runs_dir)), run)
        return Recorded(spec, result, run, problem, kept)

    def _append(self, row: LeaderboardRow, run: RunDir) -> tuple[str | None, Path | None]:
        """Append ``row``; on failure keep an ok row as the run's ``row.json``. Returns
        ``(problem, kept)``, ``(None, None)`` when the row was appended."""
        try:
            write_atomic(run.pending_row, row.model_dump_json().encode())
        except OSError:
            pass  # a full disk: the append below most likely fails too, and says so
        try:
            append_row(self.path, row)
        except (LeaderboardError, OSError) as e:
            kept = run.pending_row if row.status == "ok" and run.pending_row.exists() else None
            return str(e), kept
        run.pending_row.unlink(missing_ok=True)
        return None, None

    def pending(self, eval_dir: EvalDir, spec: RunSpec) -> LeaderboardRow | None:
        """The ok row that an earlier evaluation finished for the run ``spec`` describes (the same
        :class:`~harness.protocol.RunKey`) but could not write, as it would be appended; None when there
        is none. Reads only: planning finds these rows, and they are appended (:meth:`recover`) only
        once the file has passed its check."""
        try:
            kept = json.loads(eval_dir.run(spec).pending_row.read_text())
            # one kept before the protocol version was recorded was written by a build of version 1
            row = LeaderboardRow.model_validate({"protocol_version": 1, **kept} if isinstance(kept, dict) else kept)
        except (OSError, ValueError):
            return None
        # kept by an older version: this one's schema, and the place this evaluation records
        row = row.model_copy(
            update={"schema_version": SCHEMA_VERSION, "submission_path": row.submission_path or spec.submission_path}
        )
        if row.origin != "measured" or row.status != "ok" or row.key != spec.key:
            return None
        return row

    def recover(self, eval_dir: EvalDir, spec: RunSpec) -> tuple[LeaderboardRow | None, str | None]:
        """Append the :meth:`pending` row of the run ``spec`` describes. Returns ``(row, problem)``:
        ``(None, None)`` when there is no such row, ``(row, None)`` when it was appended now, and
        ``(row, problem)`` when it still cannot be (it stays in ``row.json``; the run is not trained
        again)."""
        row = self.pending(eval_dir, spec)
        if row is None:
            return None, None
        problem, _ = self._append(row, eval_dir.run(spec))
        return row, problem


def completed_runs(rows: pd.DataFrame, series: SeriesKey) -> dict[tuple[str, int], str]:
    """``{(arch, seed): finished_at}`` of the runs of ``series`` (this entry's file version under these
    settings) whose latest attempt is ok: the rule the standings count by (a seed whose latest attempt
    failed is run again). Another entry's runs never count, even of a byte-identical file."""
    mine = rows_of(rows, series)
    latest = latest_attempts(mine, ["arch", "seed"])
    ok = latest[latest["status"] == "ok"]
    return {(str(a), int(s)): str(t) for a, s, t in zip(ok["arch"], ok["seed"], ok["finished_at"])}
