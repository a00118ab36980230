"""Live progress of an evaluation: one line across all runs (runs done, running, queued, failed,
and an ETA), and one line per run with its state, epoch, losses and accuracy.

On a terminal the lines update in place; when output is not a terminal (CI, a log file) a line
is printed per epoch and per change of a run's state, with the overall line after each run ends.

The display fits the terminal: on one line per run when it is wide enough (without the bar
before anything else is given up), else two lines per run (the name, the bar and the state; under
them the numbers, wrapped between fields and never cut); runs queued or ended fold into a line
each when the runs would not fit the terminal's height.

The ETA weighs runs by their architecture's cost (multiply-accumulates per image) and epochs: it
measures wall seconds per unit of work over the runs that have made progress in this session
(so a machine shared by ``--jobs N`` runs is measured as shared), and divides the work left by
the number of runs going at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn

from harness.events import (
    EpochDone,
    RunEvent,
    RunFinished,
    RunInterrupted,
    RunObserver,
    RunPlaced,
    RunResumed,
    RunRetrying,
    RunStarted,
    StepsDone,
    unhandled,
)
from harness.protocol import RunKey, RunSpec
from harness.report.progress_layout import FittedProgress
from harness.training.models import forward_macs

REFRESH_S = 0.5  # how often the ETAs are recomputed


@dataclass
class RunState:
    spec: RunSpec
    label: str
    cost: float  # relative work of one epoch
    state: str = "queued"  # queued, running, retrying, ok, failed
    total_steps: int = 0
    steps: int = 0
    steps_at_start: int = 0  # done before this session (a resumed run)
    started: float | None = None
    ended: float | None = None
    epoch: int = 0

    @property
    def fraction(self) -> float:
        if self.state in ("ok", "failed"):
            return 1.0
        return self.steps / self.total_steps if self.total_steps else 0.0

    @property
    def work(self) -> float:
        return self.spec.profile.epochs * self.cost

    def session(self, now: float) -> tuple[float, float]:
        """(work done in this session, wall seconds spent on it)."""
        if self.started is None or not self.total_steps:
            return 0.0, 0.0
        done = (self.steps - self.steps_at_start) / self.total_steps * self.work
        return done, (self.ended or now) - self.started


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -:--:--"
    s = int(round(seconds))
    return f"ETA {s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class EvaluationProgress(RunObserver):
    """The observer of an evaluation's runs; ``specs`` is the plan, ``parallel`` how many go at once."""

    def __init__(self, console: Console, specs: list[RunSpec], *, parallel: int = 1, clock=time.monotonic) -> None:
        self.console, self.clock, self.parallel = console, clock, max(1, parallel)
        self.live = console.is_terminal
        # one name per entry; a baseline and a submission of the same name are told apart
        entries = {s.entry for s in specs}
        names = {e: e.name.removesuffix(".py") for e in entries}
        clash = {n for n in names.values() if list(names.values()).count(n) > 1}
        names = {e: f"{n} ({e.kind})" if n in clash else n for e, n in names.items()}
        base = min((forward_macs(s.arch) for s in specs), default=1)
        self.runs: dict[RunKey, RunState] = {}
        for s in specs:
            run = f"{s.arch} seed {s.seed}"
            label = f"{names[s.entry]} {run}" if len(names) > 1 else run
            self.runs[s.key] = RunState(s, label, forward_macs(s.arch) / base)
        width = max((len(r.label) for r in self.runs.values()), default=10) + 1
        self.progress = FittedProgress(
            TextColumn(f"[bold]{{task.fields[label]:<{width}}}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[state]:<13}"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
            disable=not self.live,
            get_time=clock,
        )
        self.overall = self.progress.add_task(
            "", total=1.0, label=f"all {len(specs)} runs", state="", stats="", eta=_duration(None), run="all"
        )
        self.tasks: dict[RunKey, TaskID] = {
            k: self.progress.add_task(
                "", total=1.0, label=r.label, state="queued", stats="", eta="", run="queued", start=False
            )
            for k, r in self.runs.items()
        }
        self._last_refresh = 0.0
        self._update_overall()

    def __enter__(self) -> EvaluationProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._update_overall()
        self.progress.stop()

    # ------------------------------------------------------------------ figures

    def seconds_per_work(self) -> float | None:
        now = self.clock()
        done = spent = 0.0
        for r in self.runs.values():
            d, s = r.session(now)
            done, spent = done + d, spent + s
        return spent / done if done > 0 else None

    def eta(self) -> float | None:
        """Seconds until every run has ended, or None before any progress was measured."""
        rate = self.seconds_per_work()
        unfinished = [r for r in self.runs.values() if r.state not in ("ok", "failed")]
        if not unfinished:
            return 0.0
        if rate is None:
            return None
        left = sum((1 - r.fraction) * r.work for r in unfinished)
        running = sum(r.state in ("running", "retrying") for r in unfinished)
        # as many at once as are running now (Ray's resources may allow fewer than planned), else the plan
        lanes = running if running else min(self.parallel, len(unfinished))
        return left * rate / lanes

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "failed": 0, "running": 0, "queued": 0}
        for r in self.runs.values():
            out["running" if r.state == "retrying" else r.state] += 1
        return out

    def summary(self) -> str:
        c = self.counts()
        ended = c["ok"] + c["failed"]
        parts = [f"{ended}/{len(self.runs)} runs ended"]
        if c["failed"]:
            parts.append(f"{c['failed']} failed")
        parts += [f"{c['running']} running", f"{c['queued']} queued"]
        return ", ".join(parts)

    def _update_overall(self, force: bool = True) -> None:
        now = self.clock()
        if not force and now - self._last_refresh < REFRESH_S:
            return
        self._last_refresh = now
        total = sum(r.work for r in self.runs.values()) or 1.0
        done = sum(r.fraction * r.work for r in self.runs.values()) / total
        self.progress.update(self.overall, completed=done, stats=self.summary(), eta=_duration(self.eta()))
        rate = self.seconds_per_work()
        for k, r in self.runs.items():
            if r.state in ("running", "retrying") and rate is not None:
                self.progress.update(self.tasks[k], eta=_duration((1 - r.fraction) * r.work * rate))

    def _set(self, r: RunState, **fields) -> None:
        self.progress.update(self.tasks[r.spec.key], run=r.state, **fields)

    def _log(self, message: str) -> None:
        if not self.live:
            self.console.print(message)

    # ------------------------------------------------------------------ RunObserver

    def on_event(self, spec: RunSpec, event: RunEvent) -> None:
        r = self.runs[spec.key]
        match event:
            case RunPlaced(where):
                self._log(f"{escape(r.label)}: running in {escape(where)}")
            case RunStarted(total_steps):
                self._started(spec, total_steps)
            case RunResumed():
                self._resumed(spec, event)
            case StepsDone(steps):
                r.steps += steps
                self._set(r, completed=r.fraction)
                self._update_overall(force=False)
            case EpochDone():
                self._epoch_done(spec, event)
            case RunRetrying():
                self._retrying(r, event)
            case RunFinished():
                self._finished(r, event)
            case RunInterrupted():
                pass  # the executor ends the run with a result
            case _:
                unhandled(event)

    def _started(self, spec: RunSpec, total_steps: int) -> None:
        r = self.runs[spec.key]
        r.state, r.total_steps, r.steps, r.steps_at_start = "running", total_steps, 0, 0
        r.started, r.ended = self.clock(), None
        self.progress.start_task(self.tasks[spec.key])  # its clock starts now, not while queued
        self._set(r, state=f"epoch 0/{spec.profile.epochs}", stats="starting", completed=0)
        n = spec.profile.epochs
        self._log(f"{escape(r.label)}: training {n} epoch{'s' if n != 1 else ''} on {spec.device}")
        self._update_overall()

    def _resumed(self, spec: RunSpec, event: RunResumed) -> None:
        r, epochs_done, steps_done = self.runs[spec.key], event.epochs_done, event.steps_done
        for note in event.notes:
            self.console.print(f"[yellow]{escape(r.label)}: {escape(note)}[/]")
        if epochs_done:
            self.console.print(
                f"{escape(r.label)}: resuming after epoch {epochs_done}/{spec.profile.epochs} "
                "from its checkpoint (the loss module's messages are replayed)"
            )
        else:
            self.console.print(f"{escape(r.label)}: no intact checkpoint; starting from scratch")
        r.steps = r.steps_at_start = steps_done
        r.epoch = epochs_done
        self._set(r, state=f"epoch {epochs_done}/{spec.profile.epochs}", completed=r.fraction)
        self._update_overall()

    def _epoch_done(self, spec: RunSpec, event: EpochDone) -> None:
        r, m, best_fine_acc = self.runs[spec.key], event.metrics, event.best_fine_acc
        r.epoch = m.epoch + 1
        stats = (
            f"loss {m.train_fine_loss:.3f}/{m.train_coarse_loss:.3f}  "
            f"test fine {m.test_fine_acc:5.2f}%  best {best_fine_acc:5.2f}%"
        )
        self._set(r, state=f"epoch {r.epoch}/{spec.profile.epochs}", stats=stats)
        self._log(f"{escape(r.label)}  epoch {r.epoch}/{spec.profile.epochs}  {stats}  ({m.seconds:.1f} s)")
        self._update_overall()
        self.progress.refresh()  # drawn now: the last epoch's numbers may be replaced before the next tick

    def _retrying(self, r: RunState, event: RunRetrying) -> None:
        attempt, retries, reason = event.attempt, event.retries, event.reason
        if r.started is not None:  # its clock stops until the new attempt starts
            r.ended = self.clock()
        r.state = "retrying"
        self._set(r, state=f"retry {attempt}/{retries}", stats="task lost")
        self.console.print(
            f"[yellow]{escape(r.label)}: the task was lost ({escape(reason)}); "
            f"retry {attempt} of {retries}, resuming from its last checkpoint[/]"
        )
        self._update_overall()

    def _finished(self, r: RunState, event: RunFinished) -> None:
        result = event.result
        r.state, r.ended = result.status, self.clock()
        done = "[green]ok[/]" if result.status == "ok" else "[red]failed[/]"
        best = f"best {result.best_fine_acc:.2f}%" if result.best_fine_acc is not None else ""
        self._set(r, state=done, stats=best, eta="", completed=1.0)
        self._update_overall()
        eta = self.eta()
        self._log(f"progress: {self.summary()}" + (f"; {_duration(eta)}" if eta else ""))
