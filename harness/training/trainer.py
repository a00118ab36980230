"""The trainer: train one epoch, evaluate, run one (architecture, seed).

Reads top to bottom. The model, the data, the optimizer, the schedule and the scorer
live here; the submission lives in the loss worker, which sees two loss values (and
what else it asked for) per step and answers with ``L``, ``dL/dfine``, ``dL/dcoarse``
and which losses ``L`` uses at all (:class:`~harness.isolation.client.StepReply`). Then:

* plain path: ``(dL/dfine * fine + dL/dcoarse * coarse).backward()`` over the losses ``L``
  uses: exactly the gradient of ``L``; a task ``L`` ignores gets no gradient at all (no
  weight decay or momentum step on its head), as in-process backpropagation would leave it;
* per-task path (:mod:`~harness.training.gradients`; ``forward`` asked for ``gramian``, or the
  module defines ``head_loss``):
  two backward passes give each task's gradients; their 2x2 Gramian over the shared
  parameters (those both losses reach: the backbone in the task's topology; every parameter
  when none is shared) goes to the worker, the shared parameters get
  ``dL/dfine * g_fine + dL/dcoarse * g_coarse`` and the others (a task's own head) their task's
  gradient times ``dH/dL_k`` (``H``: the head loss, ``L`` itself without one). No third
  backward pass.

A module that asks for ``previous_losses_after_update`` also gets, per step, a second forward pass
on the batch after the update (no gradient, training mode, as FAMO's official loop does it); its
losses go to the worker with the next step's request.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.errors import RunFailed
from harness.events import ONE_STEP, EpochDone, RunObserver
from harness.isolation.client import LossWorker, StepReply, StepRequest, WorkerError
from harness.isolation.sandbox import Sandbox
from harness.protocol import EpochMetrics, RunSpec
from harness.results.rundir import RunDir
from harness.training.checkpoint import Checkpointer, Resume, background_writes
from harness.training.compiled import compile_forward, no_silent_fallback
from harness.training.data import Split, TrainLoader
from harness.training.device import autocast_context
from harness.training.evaluation import TestMetrics as TestMetrics  # re-exported
from harness.training.evaluation import evaluate as evaluate  # re-exported
from harness.training.gradients import (
    Grads,
    _backward_combined,
    _backward_per_task,
    _drop_unreached,
    _gramian,
    _head_sq_norms,
    _task_gradients,
)
from harness.training.lifecycle import (
    RunOutcome,
    announce_start,
    best_fine_acc,
    completed,
    device_test_batches,
    epoch_metrics,
    failed,
    final_loss_state,
    loss_worker,
    record_epoch,
    set_up_device,
    start_run,
    start_worker,
    train_loader,
    write_result,
)
from harness.training.models import TwoHeadNet, task_reach
from harness.training.sgd import Optimizer
from harness.training.sharing import CpuShare
from harness.training.steplog import StepLog

# ------------------------------------------------------------------------ one step


@dataclass
class TrainMeans:
    """An epoch's training metrics, each the mean over its steps (plain floats: values are on the
    host). ``w_fine`` and ``w_coarse`` are the loss module's dL/d fine_loss and dL/d coarse_loss."""

    fine_loss: float = 0.0
    coarse_loss: float = 0.0
    combined_loss: float = 0.0
    w_fine: float = 0.0
    w_coarse: float = 0.0
    steps: int = 0

    def add(self, fine: float, coarse: float, reply: StepReply) -> None:
        """Fold one step in (a running mean)."""
        self.steps += 1
        k = 1.0 / self.steps
        self.fine_loss += k * (fine - self.fine_loss)
        self.coarse_loss += k * (coarse - self.coarse_loss)
        self.combined_loss += k * (reply.loss - self.combined_loss)
        self.w_fine += k * (reply.w_fine - self.w_fine)
        self.w_coarse += k * (reply.w_coarse - self.w_coarse)


@dataclass
class Carry:
    """What one step leaves for the next, across epochs (and checkpoints): the batch's losses
    recomputed after the update, for a module that asks for ``previous_losses_after_update``."""

    after_losses: torch.Tensor | None = None


Reach = tuple[list[bool], list[bool]]
Indices = tuple[list[int], list[int]]


@dataclass
class _StepPlan:
    """What each step of an epoch computes, as the worker asked (its :class:`Ready`) and the model's
    topology decide (which losses reach each parameter: found once per epoch)."""

    params: list[torch.nn.Parameter]
    use_gramian: bool
    use_accuracy: bool
    use_head_norms: bool
    use_after: bool
    per_task: bool  # the heads and the backbone are weighted apart
    compiled: bool  # its backward hands zeros where eager autograd leaves None
    reach: Reach = ([], [])
    groups: Indices = ([], [])  # the shared parameters (both losses reach them), the others
    gramian_over: list[int] = field(default_factory=list)  # nothing shared: every parameter, G01 = 0
    own: Indices = ([], [])  # each head's own parameters (when some are shared)

    @classmethod
    def of(cls, model: TwoHeadNet, forward: Callable, worker: LossWorker) -> _StepPlan:
        ready = worker.ready
        if ready is None:
            raise RuntimeError("train_one_epoch needs a started worker")
        caps = ready.capabilities
        use_gramian, use_head_norms = "gramian" in caps, "head_sq_norms" in caps
        plan = cls(
            params=list(model.parameters()),
            use_gramian=use_gramian,
            use_accuracy="batch_fine_acc" in caps or "batch_coarse_acc" in caps,
            use_head_norms=use_head_norms,
            use_after="previous_losses_after_update" in caps,
            per_task=bool(use_gramian or use_head_norms or ready.head_loss),
            compiled=forward is not model,
        )
        if plan.per_task or plan.compiled:
            plan.reach = task_reach(model)
        if plan.per_task:
            (fine, coarse), n = plan.reach, len(plan.params)
            shared = [i for i, (f, c) in enumerate(zip(fine, coarse)) if f and c]
            plan.groups = (shared, [i for i in range(n) if not (fine[i] and coarse[i])])
            plan.gramian_over = shared or list(range(n))
            others = plan.groups[1]
            plan.own = ([i for i in others if fine[i]], [i for i in others if coarse[i]]) if shared else ([], [])
        return plan


def train_one_epoch(
    model: TwoHeadNet,
    loader: TrainLoader,
    optimizer: Optimizer,
    worker: LossWorker,
    *,
    epoch: int,
    total_epochs: int,
    on_step: Callable[[], None] | None = None,
    precision: str = "fp32",
    forward: Callable | None = None,
    carry: Carry | None = None,
    log: StepLog | None = None,
) -> TrainMeans:
    """Train one epoch; returns its :class:`TrainMeans`.
    ``forward`` (default: ``model``) computes the two heads' logits, e.g. a compiled model.
    What the worker asked for (its :class:`Ready`) decides what each step computes. ``carry``
    holds what a step leaves for the next one (kept by the caller across epochs); ``log`` records
    every N-th step (:class:`~harness.training.steplog.StepLog`)."""
    carry = Carry() if carry is None else carry
    forward = model if forward is None else forward
    plan = _StepPlan.of(model, forward, worker)
    lr, steps_per_epoch = optimizer.param_groups[0]["lr"], loader.steps_per_epoch
    at = StepRequest(epoch=epoch, total_epochs=total_epochs, step=0, steps_per_epoch=steps_per_epoch, lr=lr,
                     fine_loss=0.0, coarse_loss=0.0)  # fmt: skip
    means = TrainMeans()
    model.train()
    for i, (x, y_fine, y_coarse) in enumerate(loader.epoch(epoch)):
        with autocast_context(precision, x.device.type):
            fine_logits, coarse_logits = forward(x)
            fine = F.cross_entropy(fine_logits, y_fine)  # float32 under autocast
            coarse = F.cross_entropy(coarse_logits, y_coarse)
        optimizer.zero_grad(set_to_none=True)
        grads = _task_gradients(plan.params, fine, coarse, plan.reach) if plan.per_task else None
        after = carry.after_losses if plan.use_after else None
        accuracy = (fine_logits, y_fine, coarse_logits, y_coarse) if plan.use_accuracy else None
        request = _request(plan, at, epoch * steps_per_epoch + i, fine, coarse, grads, after, accuracy)
        reply = _ask(worker, request)
        _backward(plan, fine, coarse, grads, reply)
        optimizer.step()
        if plan.use_after:  # the same batch after the update, as FAMO's official code measures it
            carry.after_losses = _losses_after_update(forward, x, y_fine, y_coarse, precision)
        means.add(request.fine_loss, request.coarse_loss, reply)
        if log is not None:
            log.step(i, request, reply)
        if on_step is not None:
            on_step()
    return means


def _request(
    plan: _StepPlan,
    at: StepRequest,
    step: int,
    fine: torch.Tensor,
    coarse: torch.Tensor,
    grads: tuple[Grads, Grads] | None,
    after: torch.Tensor | None,
    accuracy: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None,
) -> StepRequest:
    """The step's request to the worker (``at``: the epoch's fields; ``step`` counts from the first
    epoch): the two losses and what the
    worker asked for, brought to the host in the step's one synchronisation. Raises
    :class:`RunFailed` when any of them is not finite (the training diverged)."""
    to_host = [fine.detach(), coarse.detach()]
    if grads is not None and plan.use_gramian:
        to_host.extend(_gramian(grads[0], grads[1], plan.gramian_over))
    if grads is not None and plan.use_head_norms:
        to_host.extend(_head_sq_norms(grads[0], grads[1], plan.own, fine.device))
    if after is not None:
        to_host.extend(after)
    if accuracy is not None:
        fine_logits, y_fine, coarse_logits, y_coarse = accuracy
        to_host.append((fine_logits.argmax(1) == y_fine).float().mean())
        to_host.append((coarse_logits.argmax(1) == y_coarse).float().mean())
    host = torch.stack(to_host).tolist()  # the one host synchronisation of the step
    fine_v, coarse_v = host[0], host[1]
    if not all(math.isfinite(v) for v in host):
        what = "task losses" if not (math.isfinite(fine_v) and math.isfinite(coarse_v)) else "task gradients"
        raise RunFailed(
            f"training diverged: the {what} became non-finite "
            f"(fine loss={fine_v}, coarse loss={coarse_v}) at epoch {at.epoch}, step {step}"
        )
    g, h = plan.use_gramian, plan.use_head_norms
    return dataclasses.replace(
        at,
        step=step,
        fine_loss=fine_v,
        coarse_loss=coarse_v,
        gramian=tuple(host[2:5]) if g else None,
        head_sq_norms=_at(host, 2 + 3 * g) if h else None,
        after_losses=_at(host, 2 + 3 * g + 2 * h) if after is not None else None,
        batch_accuracy=tuple(host[-2:]) if accuracy is not None else None,
    )


def _ask(worker: LossWorker, request: StepRequest) -> StepReply:
    try:
        return worker.step(request)
    except WorkerError as e:
        raise RunFailed(f"epoch {request.epoch}, step {request.step}: {e}") from e


def _backward(
    plan: _StepPlan, fine: torch.Tensor, coarse: torch.Tensor, grads: tuple[Grads, Grads] | None, reply: StepReply
) -> None:
    """The gradient of ``L`` into the parameters: per task and parameter group, or combined."""
    if grads is not None:
        _backward_per_task(plan.params, plan.groups, grads[0], grads[1], reply)
    else:
        _backward_combined(fine, coarse, reply)
        if plan.compiled:
            _drop_unreached(plan.params, plan.reach, reply)


def _at(host: list[float], i: int) -> tuple[float, float]:
    return host[i], host[i + 1]


@torch.no_grad()
def _losses_after_update(
    forward: Callable, x: torch.Tensor, y_fine: torch.Tensor, y_coarse: torch.Tensor, precision: str
) -> torch.Tensor:
    """A second forward pass on the step's batch after the update, in training mode (batch-norm
    statistics and their running averages as the official FAMO loop leaves them); stays on the device."""
    with autocast_context(precision, x.device.type):
        fine_logits, coarse_logits = forward(x)
        return torch.stack([F.cross_entropy(fine_logits, y_fine), F.cross_entropy(coarse_logits, y_coarse)])


# -------------------------------------------------------------------------- one run


def checkpoint_state(model: TwoHeadNet, optimizer: Optimizer, device: torch.device, carry: Carry) -> dict[str, object]:
    """What a checkpoint holds besides the metrics and messages (:func:`~harness.training.lifecycle.restore`
    and :func:`resumed_carry` read it back). A tensor that is a view of a larger one (a fused seed's
    BatchNorm buffers) is saved on its own."""
    return {
        "model": {
            k: v.clone() if v.untyped_storage().nbytes() != v.nbytes else v for k, v in model.state_dict().items()
        },
        "optimizer": optimizer.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "after_losses": None if carry.after_losses is None else carry.after_losses.cpu(),
    }


def save_checkpoint(
    checkpointer: Checkpointer,
    epochs_done: int,
    history: list[EpochMetrics],
    worker: LossWorker,
    model: TwoHeadNet,
    optimizer: Optimizer,
    device: torch.device,
    carry: Carry,
) -> None:
    """The checkpoint after ``epochs_done`` epochs, of a run or of one fused seed: its
    :func:`checkpoint_state`, its metrics so far and the messages its loss module was sent
    (written in the background on a GPU)."""
    state = checkpoint_state(model, optimizer, device, carry)
    checkpointer.save(epochs_done, history, worker.sent_steps, state, background=background_writes(device))


def resumed_carry(resume: Resume | None, device: torch.device) -> Carry:
    """What the checkpointed step left for the next one (nothing when the run starts afresh)."""
    after = resume.state.get("after_losses") if resume is not None else None
    return Carry(after.to(device) if after is not None else None)


def _epoch(
    spec: RunSpec,
    epoch: int,
    model: TwoHeadNet,
    optimizer: Optimizer,
    worker: LossWorker,
    loader: TrainLoader,
    test_batches: list,
    forward: Callable,
    on_step: Callable[[], None],
    carry: Carry,
    log: StepLog | None = None,
) -> EpochMetrics:
    """One epoch at its scheduled learning rate, then the test split."""
    start = time.perf_counter()
    epochs = spec.profile.epochs
    lr = spec.profile.optimizer.lr_at(epoch, epochs)
    for group in optimizer.param_groups:
        group["lr"] = lr
    train = train_one_epoch(
        model,
        loader,
        optimizer,
        worker,
        epoch=epoch,
        total_epochs=epochs,
        on_step=on_step,
        precision=spec.precision,
        forward=forward,
        carry=carry,
        log=log,
    )
    test = evaluate(model, test_batches, precision=spec.precision, forward=forward)
    return epoch_metrics(epoch, lr, train, test, time.perf_counter() - start)


def run_one(
    spec: RunSpec,
    *,
    submission: Path,
    train: Split,
    test: Split,
    run_dir: RunDir | Path,
    sandbox: Sandbox,
    observer: RunObserver | None = None,
    threads: int = 0,
) -> RunOutcome:
    """Train ``spec.arch`` with ``spec.seed`` and the submission's loss; never raises for
    a failure of the submission or the worker: the outcome is then ``failed``. Its files go
    into ``run_dir`` (:class:`~harness.results.rundir.RunDir`); an interrupted run resumes from its
    last checkpoint, a run the submission failed starts again from epoch 0. Its progress goes to
    ``observer`` (:mod:`harness.events`). On the CPU the run takes its share of the machine's cores
    among the trainers running on it (at most ``threads`` when given:
    :class:`~harness.training.sharing.CpuShare`).
    """
    observer = observer or RunObserver()
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    run.start(spec)
    start = time.perf_counter()
    device, dtype = set_up_device(spec)
    checkpointer = Checkpointer(run.checkpoint, spec)
    model, optimizer, resume, notes = start_run(spec, run, device, dtype, checkpointer)
    forward = compile_forward(model) if spec.compile else model  # shares the parameters
    loader = train_loader(spec, train, device, dtype)
    batches = device_test_batches(spec, test, device, dtype)
    first_epoch, history = announce_start(observer, spec, resume, notes, loader.steps_per_epoch)
    carry, loss_state = resumed_carry(resume, device), None
    try:
        with (
            no_silent_fallback(spec.compile),
            CpuShare(device.type, cap=threads) as share,
            loss_worker(spec, run, submission, sandbox) as worker,
        ):
            start_worker(worker, resume)
            log = StepLog(run, worker, loader.steps_per_epoch, spec.profile.epochs, first_epoch)

            def on_step() -> None:
                observer.on_event(spec, ONE_STEP)
                share.tick()

            for epoch in range(first_epoch, spec.profile.epochs):
                metrics = _epoch(spec, epoch, model, optimizer, worker, loader, batches, forward, on_step, carry, log)
                record_epoch(run, history, metrics, log)
                if epoch + 1 < spec.profile.epochs:
                    save_checkpoint(checkpointer, epoch + 1, history, worker, model, optimizer, device, carry)
                observer.on_event(spec, EpochDone(metrics, best_fine_acc(history)))
            loss_state = final_loss_state(worker, run)
        result = completed(history)
        checkpointer.clear()
    except Exception as e:  # noqa: BLE001  (one run's failure must not stop the others)
        result = failed(spec, e, submission, run, checkpointer, history, start)
    finally:
        checkpointer.settle()  # a stopped run leaves no write under way
    return RunOutcome(write_result(run, result, device), history, model, loss_state)
