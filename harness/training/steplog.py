"""What a loss did within its epochs: every N-th training step's loss weights and the scalars the
loss module reports, written to the run's ``steps.jsonl`` (beside ``metrics.jsonl``, which holds the
epoch means).

N is derived from the steps per epoch so that a run logs at most :data:`MAX_POINTS` steps: the
same evenly spaced positions in every epoch, ending with its last batch (:func:`log_positions`),
every step when a run is short.
One line per logged step::

    {"step": 389, "epoch": 0, "loss": 6.1, "fine_loss": 4.2, "coarse_loss": 2.9,
     "weight_fine": 1.0, "weight_coarse": 0.63, "scalars": {"gate": 0.3}}

``weight_*`` are ``dL/dL_k`` of that step; ``head_fine`` / ``head_coarse`` (``dH/dL_k``) are added
when the module defines ``head_loss``; ``scalars`` holds what the module's optional ``scalars()``
method returned after the step (at most 8 names, checked as hostile input by
:func:`~harness.isolation.messages.scalars_report`), when it returned any. A run keeps at most
:data:`MAX_RUN_SCALARS` distinct names, the first it saw (a resumed run counts those before its
checkpoint): a step that reported others has them left out and counted in ``scalars_dropped``, so
that no module can fill a report with thousands of series.
"""

from __future__ import annotations

from harness.errors import RunFailed
from harness.isolation.client import LossWorker, StepReply, StepRequest, WorkerError
from harness.results.rundir import RunDir

MAX_POINTS = 400  # logged steps per run, at most
MAX_RUN_SCALARS = 16  # distinct scalars() names a run keeps


def log_positions(steps_per_epoch: int, epochs: int) -> frozenset[int]:
    """The batches of each epoch that are logged: about every N-th, N = steps per epoch / k, with
    k per epoch such that the run logs at most :data:`MAX_POINTS` steps (at least one an epoch:
    its last batch)."""
    k = max(1, min(steps_per_epoch, MAX_POINTS // max(1, epochs)))
    return frozenset(round((j + 1) * steps_per_epoch / k) - 1 for j in range(k))


class StepLog:
    """The logged steps of one run, written out at the end of each epoch (:meth:`flush`)."""

    def __init__(self, run: RunDir, worker: LossWorker, steps_per_epoch: int, epochs: int, first_epoch: int) -> None:
        self.run, self.worker = run, worker
        self.positions = log_positions(steps_per_epoch, epochs)
        self.lines: list[dict] = []
        run.restart_steps(first_epoch * steps_per_epoch)  # a resumed run keeps the steps before its checkpoint
        self.names = {name for line in run.read_steps() for name in line.get("scalars", {})}

    def step(self, i: int, request: StepRequest, reply: StepReply) -> None:
        """Batch ``i`` of the epoch was trained with ``reply``: log it when it is one of the positions."""
        if i not in self.positions:
            return
        line: dict = {
            "step": request.step,
            "epoch": request.epoch,
            "loss": reply.loss,
            "fine_loss": request.fine_loss,
            "coarse_loss": request.coarse_loss,
            "weight_fine": reply.w_fine,
            "weight_coarse": reply.w_coarse,
        }
        if self.worker.ready is not None and self.worker.ready.head_loss:
            line.update(head_fine=reply.h_fine, head_coarse=reply.h_coarse)
        try:
            scalars = self.worker.scalars()
        except WorkerError as e:
            raise RunFailed(f"epoch {request.epoch}, step {request.step}: {e}") from e
        for name in scalars:
            if len(self.names) < MAX_RUN_SCALARS:
                self.names.add(name)
        kept = {name: value for name, value in scalars.items() if name in self.names}
        if kept:
            line["scalars"] = kept
        if len(kept) < len(scalars):
            line["scalars_dropped"] = len(scalars) - len(kept)
        self.lines.append(line)

    def flush(self) -> None:
        self.run.append_steps(self.lines)
        self.lines = []
