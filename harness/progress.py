"""Live progress for an evaluation: one bar per run with epoch, losses, accuracy and ETA.

On a terminal the bars update in place; when output is not a terminal (CI, a log file)
one line per epoch is printed instead, so logs show the same information.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.protocol import EpochMetrics, RunResult, RunSpec
from harness.train import RunObserver


def _label(spec: RunSpec) -> str:
    return f"{spec.arch} seed {spec.seed}"


class RichProgress(RunObserver):
    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.fields[label]:<18}"),
            BarColumn(bar_width=24),
            TextColumn("epoch {task.fields[epoch]}"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not self.live,
        )
        self.task: TaskID | None = None  # the current run (sequential evaluation)
        self.tasks: dict[tuple[str, int], TaskID] = {}

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def run_started(self, spec: RunSpec, total_steps: int) -> None:
        self.task = self.progress.add_task(
            "", total=total_steps, label=_label(spec), epoch=f"0/{spec.profile.epochs}", stats="starting")
        self.tasks[(spec.arch, spec.seed)] = self.task
        if not self.live:
            n = spec.profile.epochs
            self.console.print(f"{_label(spec)}: training {n} epoch{'s' if n != 1 else ''} on {spec.device}")

    def run_resumed(self, spec: RunSpec, epochs_done: int, steps_done: int, notes: list[str]) -> None:
        for note in notes:
            self.console.print(f"[yellow]{_label(spec)}: {note}[/]")
        if epochs_done:
            self.console.print(f"{_label(spec)}: resuming after epoch {epochs_done}/{spec.profile.epochs} "
                               "from its checkpoint (the loss module's messages are replayed)")
        else:
            self.console.print(f"{_label(spec)}: no intact checkpoint; starting from scratch")
        task = self.tasks.get((spec.arch, spec.seed))
        if task is not None and steps_done:
            self.progress.advance(task, steps_done)

    def step_done(self) -> None:
        if self.task is not None:
            self.progress.advance(self.task)

    def steps_done_for(self, spec: RunSpec, steps: int) -> None:
        """Steps of one of several concurrent runs (``--jobs``)."""
        task = self.tasks.get((spec.arch, spec.seed))
        if task is not None:
            self.progress.advance(task, steps)

    def epoch_done(self, spec: RunSpec, m: EpochMetrics, best_fine_acc: float) -> None:
        stats = (f"loss {m.train_fine_loss:.3f}/{m.train_coarse_loss:.3f}  "
                 f"test fine {m.test_fine_acc:5.2f}%  best {best_fine_acc:5.2f}%")
        task = self.tasks.get((spec.arch, spec.seed))
        if task is not None:
            self.progress.update(task, epoch=f"{m.epoch + 1}/{spec.profile.epochs}", stats=stats)
        if not self.live:
            self.console.print(f"{_label(spec)}  epoch {m.epoch + 1}/{spec.profile.epochs}  {stats}  "
                               f"({m.seconds:.1f} s)")

    def run_finished(self, spec: RunSpec, result: RunResult) -> None:
        task = self.tasks.pop((spec.arch, spec.seed), None)
        if task is not None:
            done = "[green]ok" if result.status == "ok" else "[red]failed"
            self.progress.update(task, stats=f"{done}[/]  best {result.best_fine_acc or 0:.2f}%")
            self.progress.stop_task(task)
        if task == self.task:
            self.task = None
