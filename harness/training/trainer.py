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

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.errors import RunFailed
from harness.events import ONE_STEP, EpochDone, RunObserver, RunResumed, RunStarted
from harness.isolation.client import LossWorker, StepReply, StepRequest, WorkerError
from harness.isolation.sandbox import Sandbox, as_user_path
from harness.protocol import EpochMetrics, RunResult, RunSpec
from harness.results.rundir import RunDir
from harness.training.checkpoint import Checkpointer, Resume, background_writes
from harness.training.compiled import compile_forward, no_silent_fallback
from harness.training.data import Split, TrainLoader, eval_batches
from harness.training.device import autocast_context, float32_math, set_determinism, set_fp32_precision
from harness.training.evaluation import TestMetrics as TestMetrics  # re-exported
from harness.training.evaluation import evaluate as evaluate  # re-exported
from harness.training.gradients import (
    _backward_combined,
    _backward_per_task,
    _drop_unreached,
    _gramian,
    _head_sq_norms,
    _task_gradients,
)
from harness.training.models import TwoHeadNet, build_model, task_reach
from harness.training.sharing import CpuShare
from harness.training.steplog import StepLog
from harness.util.provenance import device_name

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


def train_one_epoch(
    model: TwoHeadNet,
    loader: TrainLoader,
    optimizer: torch.optim.Optimizer,
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
    ready = worker.ready
    if ready is None:
        raise RuntimeError("train_one_epoch needs a started worker")
    lr = optimizer.param_groups[0]["lr"]
    use_gramian = "gramian" in ready.capabilities
    use_accuracy = "batch_fine_acc" in ready.capabilities or "batch_coarse_acc" in ready.capabilities
    use_head_norms = "head_sq_norms" in ready.capabilities
    use_after = "previous_losses_after_update" in ready.capabilities
    per_task = use_gramian or use_head_norms or ready.head_loss  # the heads and the backbone are weighted apart
    compiled = forward is not model  # its backward hands zeros where eager autograd leaves None
    params = list(model.parameters())
    if per_task or compiled:  # which losses reach each parameter: fixed by the topology, found once per epoch
        reach = task_reach(model)
    if per_task:
        shared = [i for i, (f, c) in enumerate(zip(*reach)) if f and c]  # both losses reach them
        groups = (shared, [i for i in range(len(params)) if not (reach[0][i] and reach[1][i])])
        gramian_over = shared or list(range(len(params)))  # nothing shared: over every parameter, G01 = 0
        own = ([i for i in groups[1] if reach[0][i]], [i for i in groups[1] if reach[1][i]]) if shared else ([], [])
    steps_per_epoch = loader.steps_per_epoch
    means = TrainMeans()
    model.train()
    for i, (x, y_fine, y_coarse) in enumerate(loader.epoch(epoch)):
        step = epoch * steps_per_epoch + i
        with autocast_context(precision, x.device.type):
            fine_logits, coarse_logits = forward(x)
            fine = F.cross_entropy(fine_logits, y_fine)  # float32 under autocast
            coarse = F.cross_entropy(coarse_logits, y_coarse)
        optimizer.zero_grad(set_to_none=True)

        to_host = [fine.detach(), coarse.detach()]
        if per_task:
            g_fine, g_coarse = _task_gradients(params, fine, coarse, reach)
        if use_gramian:
            to_host.extend(_gramian(g_fine, g_coarse, gramian_over))
        if use_head_norms:
            to_host.extend(_head_sq_norms(g_fine, g_coarse, own, fine.device))
        after = carry.after_losses if use_after else None
        if after is not None:
            to_host.extend(after)
        if use_accuracy:
            to_host.append((fine_logits.argmax(1) == y_fine).float().mean())
            to_host.append((coarse_logits.argmax(1) == y_coarse).float().mean())
        host = torch.stack(to_host).tolist()  # the one host synchronisation of the step
        fine_v, coarse_v = host[0], host[1]
        if not all(math.isfinite(v) for v in host):
            what = "task losses" if not (math.isfinite(fine_v) and math.isfinite(coarse_v)) else "task gradients"
            raise RunFailed(
                f"training diverged: the {what} became non-finite "
                f"(fine loss={fine_v}, coarse loss={coarse_v}) at epoch {epoch}, step {step}"
            )
        request = StepRequest(
            epoch=epoch,
            total_epochs=total_epochs,
            step=step,
            steps_per_epoch=steps_per_epoch,
            lr=lr,
            fine_loss=fine_v,
            coarse_loss=coarse_v,
            gramian=tuple(host[2:5]) if use_gramian else None,
            head_sq_norms=_at(host, 2 + 3 * use_gramian) if use_head_norms else None,
            after_losses=_at(host, 2 + 3 * use_gramian + 2 * use_head_norms) if after is not None else None,
            batch_accuracy=tuple(host[-2:]) if use_accuracy else None,
        )
        try:
            reply = worker.step(request)
        except WorkerError as e:
            raise RunFailed(f"epoch {epoch}, step {step}: {e}") from e

        if per_task:
            _backward_per_task(params, groups, g_fine, g_coarse, reply)
        else:
            _backward_combined(fine, coarse, reply)
            if compiled:
                _drop_unreached(params, reach, reply)
        optimizer.step()
        if use_after:  # the same batch after the update, as FAMO's official code measures it
            carry.after_losses = _losses_after_update(forward, x, y_fine, y_coarse, precision)
        means.add(fine_v, coarse_v, reply)
        if log is not None:
            log.step(i, request, reply)
        if on_step is not None:
            on_step()
    return means


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


@dataclass
class RunOutcome:
    result: RunResult
    history: list[EpochMetrics] = field(default_factory=list)
    model: TwoHeadNet | None = None
    loss_state: dict[str, list[float]] | None = None


def _fresh_model(spec: RunSpec, device: torch.device, dtype: torch.dtype) -> tuple[TwoHeadNet, torch.optim.Optimizer]:
    """The model as initialised by the run's seed, and its SGD optimizer."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.arch, topology=spec.topology).to(device, dtype)
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = spec.profile.optimizer
    optimizer = torch.optim.SGD(
        model.parameters(), lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay, nesterov=opt.nesterov
    )
    return model, optimizer


def train_loader(spec: RunSpec, train: Split, device: torch.device, dtype: torch.dtype) -> TrainLoader:
    """The run's training split on ``device``, in the order and augmentation its seed draws."""
    profile = spec.profile
    return TrainLoader(
        train,
        batch_size=profile.batch_size,
        seed=spec.seed,
        device=device,
        padding=profile.crop_padding,
        flip=profile.horizontal_flip,
        channels_last=spec.channels_last,
        dtype=dtype,
    )


def checkpoint_state(
    model: TwoHeadNet, optimizer: torch.optim.Optimizer, device: torch.device, carry: Carry
) -> dict[str, object]:
    """What a checkpoint holds besides the metrics and messages (:func:`_restore` reads it back).
    A tensor that is a view of a larger one (a fused seed's BatchNorm buffers) is saved on its own."""
    return {
        "model": {
            k: v.clone() if v.untyped_storage().nbytes() != v.nbytes else v for k, v in model.state_dict().items()
        },
        "optimizer": optimizer.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "after_losses": None if carry.after_losses is None else carry.after_losses.cpu(),
    }


def _restore(state: dict, model: TwoHeadNet, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Load a checkpoint's state (CPU tensors: the optimizer state follows its parameters' device;
    RNG states must stay CPU byte tensors, as ``set_rng_state`` requires on every device)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng_cpu"])
    if device.type == "cuda" and state.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(state["rng_cuda"], device)


def _start(
    spec: RunSpec,
    run: RunDir,
    device: torch.device,
    dtype: torch.dtype,
    checkpointer: Checkpointer,
    at_most: int | None = None,
) -> tuple[TwoHeadNet, torch.optim.Optimizer, Resume | None, list[str]]:
    """The model and optimizer the run goes on from: its last intact checkpoint's (of at most
    ``at_most`` epochs), else fresh (the checkpoint directory is then cleared). ``metrics.jsonl`` is
    made to match. Never raises for a damaged checkpoint: the notes say what was found."""
    resume, notes = checkpointer.load(at_most)  # never raises; tensors on the CPU
    model, optimizer = _fresh_model(spec, device, dtype)
    if resume is not None:
        try:
            _restore(resume.state, model, optimizer, device)
        except Exception as e:  # noqa: BLE001  (intact file, unusable content: e.g. written by another build)
            notes.append(
                f"the checkpoint after epoch {resume.epochs_done} cannot be used "
                f"({type(e).__name__}: {e}); starting from scratch"
            )
            resume = None
            model, optimizer = _fresh_model(spec, device, dtype)  # the failed restore may have changed it
    if resume is None:
        checkpointer.clear()
    run.restart_history(resume.history if resume is not None else [])
    return model, optimizer, resume, notes


def _epoch(
    spec: RunSpec,
    epoch: int,
    model: TwoHeadNet,
    optimizer: torch.optim.Optimizer,
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
    return EpochMetrics(
        epoch=epoch,
        lr=lr,
        train_fine_loss=train.fine_loss,
        train_coarse_loss=train.coarse_loss,
        train_combined_loss=train.combined_loss,
        weight_fine=train.w_fine,
        weight_coarse=train.w_coarse,
        test_fine_loss=test.fine_loss,
        test_coarse_loss=test.coarse_loss,
        test_fine_acc=test.fine_acc,
        test_coarse_acc=test.coarse_acc,
        seconds=time.perf_counter() - start,
    )


def _failure(
    spec: RunSpec, e: Exception, submission: Path, run: RunDir, checkpointer: Checkpointer, epochs_done: int
) -> str:
    """Why the run failed, as ``failure.txt`` records it. A failure the submission or its worker
    caused (an error, a crash, a limit, a divergence: :class:`RunFailed`) clears the checkpoint, so the
    next attempt starts from epoch 0 and failing on purpose cannot buy a re-draw of the epochs since
    the last checkpoint (a killed process or a Ctrl-C, not RunFailed, still resumes)."""
    if isinstance(e, RunFailed):
        reason = as_user_path(str(e), submission)
        checkpointer.clear()
        note = "(a new attempt starts from epoch 0: failures caused by the submission are not resumed)\n"
    else:
        reason = f"internal error at epoch {epochs_done}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=-8)}"
        note = ""
    run.write_failure(f"{spec.submission} failed on {spec.arch}, seed {spec.seed}:\n{reason}\n{note}")
    return reason.strip()


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
    last checkpoint, a run the submission failed starts again from epoch 0. On the CPU the run
    takes its share of the machine's cores among the trainers running on it (at most ``threads``
    when given: :class:`~harness.training.sharing.CpuShare`).
    """
    observer = observer or RunObserver()
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    profile = spec.profile
    run.start(spec)
    start = time.perf_counter()
    device, dtype = torch.device(spec.device), getattr(torch, spec.dtype)
    set_determinism(spec.deterministic, device)
    set_fp32_precision(spec.precision, device)
    checkpointer = Checkpointer(run.checkpoint, spec)
    model, optimizer, resume, notes = _start(spec, run, device, dtype, checkpointer)
    forward = compile_forward(model) if spec.compile else model  # shares the parameters
    loader = train_loader(spec, train, device, dtype)
    test_batches = eval_batches(
        test, batch_size=profile.eval_batch_size, device=device, channels_last=spec.channels_last, dtype=dtype
    )
    observer.on_event(spec, RunStarted(profile.epochs * loader.steps_per_epoch))
    first_epoch, history = (resume.epochs_done, list(resume.history)) if resume is not None else (0, [])
    if resume is not None or notes:
        observer.on_event(spec, RunResumed(first_epoch, first_epoch * loader.steps_per_epoch, tuple(notes)))
    loss_state = None
    after = resume.state.get("after_losses") if resume is not None else None
    carry = Carry(after.to(device) if after is not None else None)
    try:
        with (
            no_silent_fallback(spec.compile),
            CpuShare(device.type, cap=threads) as share,
            LossWorker(
                submission,
                sandbox=sandbox,
                seed=spec.seed,
                optimizer=profile.optimizer,
                dtype=spec.dtype,
                log_path=run.worker_log,
                start_timeout=profile.worker_start_timeout_s,
                call_timeout=profile.worker_call_timeout_s,
                run_budget=profile.worker_run_budget_s,
            ) as worker,
        ):
            _start_worker(worker, resume)
            log = StepLog(run, worker, loader.steps_per_epoch, profile.epochs, first_epoch)

            def on_step() -> None:
                observer.on_event(spec, ONE_STEP)
                share.tick()

            for epoch in range(first_epoch, profile.epochs):
                metrics = _epoch(
                    spec, epoch, model, optimizer, worker, loader, test_batches, forward, on_step, carry, log
                )
                history.append(metrics)
                run.append_metrics(metrics)
                log.flush()
                if epoch + 1 < profile.epochs:
                    state = checkpoint_state(model, optimizer, device, carry)
                    checkpointer.save(
                        epoch + 1, history, worker.sent_steps, state, background=background_writes(device)
                    )
                observer.on_event(spec, EpochDone(metrics, max(m.test_fine_acc for m in history)))
            loss_state = _loss_state(worker, run)
        # the training time of every epoch, the ones before a resume included (their checkpointed metrics)
        result = RunResult.from_epochs(history, sum(m.seconds for m in history))
        checkpointer.clear()
    except Exception as e:  # noqa: BLE001  (one run's failure must not stop the others)
        reason = _failure(spec, e, submission, run, checkpointer, len(history))
        result = RunResult.failed(reason, epochs_done=len(history), wall_seconds=time.perf_counter() - start)
    finally:
        checkpointer.settle()  # a stopped run leaves no write under way
    result = result.model_copy(update={"device": device_name(device), "float32_math": float32_math(device)})
    run.write_result(result)
    return RunOutcome(result, history, model, loss_state)


def _start_worker(worker: LossWorker, resume: Resume | None) -> None:
    """Start the loss worker; on resume, rebuild the loss module's state from what the trainer sent
    (never from anything the worker wrote)."""
    try:
        worker.start()
    except WorkerError as e:
        raise RunFailed(f"starting the loss module: {e}") from e
    if resume is not None:
        try:
            worker.replay(resume.frames)
        except WorkerError as e:
            raise RunFailed(f"replaying the first {resume.epochs_done} epochs to the loss module: {e}") from e


def _loss_state(worker: LossWorker, run: RunDir) -> dict[str, list[float]] | None:
    """The loss module's final parameters, written to ``loss_state.json`` (a report only: a worker
    that cannot say them does not fail the run)."""
    try:
        state = worker.state()
    except WorkerError:
        return None
    run.write_loss_state(state)
    return state
