"""The trainer: train one epoch, evaluate, run one (architecture, seed).

Reads top to bottom. The model, the data, the optimizer, the schedule and the scorer
live here; the submission lives in the loss worker, which sees two loss values (and
what else it asked for) per step and answers with ``L``, ``dL/dfine``, ``dL/dcoarse``
and which losses ``L`` uses at all (:class:`~harness.isolation.client.StepReply`). Then:

* plain path: ``(dL/dfine * fine + dL/dcoarse * coarse).backward()`` over the losses ``L``
  uses: exactly the gradient of ``L``; a task ``L`` ignores gets no gradient at all (no
  weight decay or momentum step on its head), as in-process backpropagation would leave it;
* per-task path (``forward`` asked for ``gramian``, or the module defines ``head_loss``):
  two backward passes give each task's gradients; their 2x2 Gramian over the shared
  parameters (those both losses reach: the backbone in the task card's topology; every parameter
  when none is shared) goes to the worker, the shared parameters get
  ``dL/dfine * g_fine + dL/dcoarse * g_coarse`` and the others (a task's own head) their task's
  gradient times ``dH/dL_k`` (``H``: the head loss, ``L`` itself without one). No third
  backward pass.
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
from harness.isolation.client import LossWorker, StepReply, StepRequest, WorkerError
from harness.isolation.sandbox import Sandbox, as_user_path
from harness.protocol import EpochMetrics, RunResult, RunSpec
from harness.provenance import device_name
from harness.rundir import RunDir
from harness.training.checkpoint import Checkpointer
from harness.training.data import Split, TrainLoader, eval_batches
from harness.training.device import autocast_context, set_determinism, set_fp32_precision
from harness.training.models import TwoHeadNet, build_model, task_reach

# ------------------------------------------------------------------------ one step


class _EpochTally:
    """Running sums for an epoch's train metrics (plain floats: values are on the host)."""

    def __init__(self) -> None:
        self.n = 0
        self.sums = [0.0] * 5  # fine, coarse, combined, w_fine, w_coarse

    def add(self, *values: float) -> None:
        self.n += 1
        for i, v in enumerate(values):
            self.sums[i] += v

    def means(self) -> list[float]:
        return [s / max(self.n, 1) for s in self.sums]


Grads = tuple[torch.Tensor | None, ...]


def _task_gradients(params: list[torch.nn.Parameter], fine: torch.Tensor, coarse: torch.Tensor,
                    reach: tuple[list[bool], list[bool]]) -> tuple[Grads, Grads]:
    """Each task loss backpropagated on its own: per parameter, its fine and its coarse gradient;
    None where that loss does not reach the parameter (``reach``, from the eager module: a compiled
    graph may return zeros there), e.g. the other task's head."""
    g_fine = torch.autograd.grad(fine, params, retain_graph=True, allow_unused=True)
    g_coarse = torch.autograd.grad(coarse, params, allow_unused=True)
    # autograd may hand out one tensor for two parameters (e.g. ``p + q`` of equal shapes); the
    # gradients are scaled in place later, so each must be its own tensor
    seen: set[int] = set()
    unique = []
    for g, reached in zip((*g_fine, *g_coarse), (*reach[0], *reach[1])):
        g = g if reached else None
        if g is not None and id(g) in seen:
            g = g.clone()
        if g is not None:
            seen.add(id(g))
        unique.append(g)
    return tuple(unique[:len(params)]), tuple(unique[len(params):])


def _gramian(g_fine: Grads, g_coarse: Grads, over: list[int]) -> torch.Tensor:
    """``(G00, G01, G11)`` of the task gradients over the parameters ``over`` (indices); a missing
    gradient is 0."""
    keep = [(g_fine[i], g_coarse[i]) for i in over if g_fine[i] is not None or g_coarse[i] is not None]
    flat_f = torch.cat([(f if f is not None else torch.zeros_like(c)).reshape(-1) for f, c in keep])
    flat_c = torch.cat([(c if c is not None else torch.zeros_like(f)).reshape(-1) for f, c in keep])
    return torch.stack([flat_f.dot(flat_f), flat_f.dot(flat_c), flat_c.dot(flat_c)])


def _set_combined_gradients(params: list[torch.nn.Parameter], g_fine: Grads, g_coarse: Grads,
                            w_fine: float, w_coarse: float, uses_fine: bool, uses_coarse: bool) -> None:
    """``p.grad <- w_fine * g_fine + w_coarse * g_coarse``, leaving out a loss the combined loss does
    not use (and leaving ``p.grad`` None where no used loss reaches ``p``). Consumes the gradients."""
    both_p, both_f, both_c = [], [], []
    for p, f, c in zip(params, g_fine if uses_fine else [None] * len(params),
                       g_coarse if uses_coarse else [None] * len(params)):
        if f is not None and c is not None:
            both_p.append(p), both_f.append(f), both_c.append(c)
        elif f is not None:
            p.grad = f.mul_(w_fine)
        elif c is not None:
            p.grad = c.mul_(w_coarse)
    if both_p:
        torch._foreach_mul_(both_c, w_coarse)
        torch._foreach_add_(both_c, both_f, alpha=w_fine)
        for p, g in zip(both_p, both_c):
            p.grad = g


def _backward_per_task(params: list[torch.nn.Parameter], groups: tuple[list[int], list[int]], g_fine: Grads,
                       g_coarse: Grads, reply: StepReply) -> None:
    """Gradients from the per-task gradients: the shared parameters (``groups[0]``: both losses reach
    them) get ``dL/dL_k``-weighted ones, the others (``groups[1]``: a task's own head, and backbone
    when independent) the ``dH/dL_k``-weighted ones (H: the head loss, ``L`` itself without one)."""
    for pick, w_fine, w_coarse, uses_fine, uses_coarse in (
            (groups[0], reply.w_fine, reply.w_coarse, reply.uses_fine, reply.uses_coarse),
            (groups[1], reply.h_fine, reply.h_coarse, reply.head_uses_fine, reply.head_uses_coarse)):
        _set_combined_gradients([params[i] for i in pick], [g_fine[i] for i in pick], [g_coarse[i] for i in pick],
                                w_fine, w_coarse, uses_fine, uses_coarse)


def _backward_combined(fine: torch.Tensor, coarse: torch.Tensor, reply: StepReply) -> None:
    """Backpropagate ``w_fine * fine + w_coarse * coarse`` over the losses the combined loss uses: the
    exact gradient of the submission's loss. Python-scalar weights: no host-to-device copy."""
    terms = [t * w for t, w, used in ((fine, reply.w_fine, reply.uses_fine),
                                      (coarse, reply.w_coarse, reply.uses_coarse)) if used]
    if terms:
        (terms[0] if len(terms) == 1 else terms[0] + terms[1]).backward()


def train_one_epoch(model: TwoHeadNet, loader: TrainLoader, optimizer: torch.optim.Optimizer,
                    worker: LossWorker, *, epoch: int, total_epochs: int,
                    on_step: Callable[[], None] | None = None, precision: str = "fp32",
                    forward: Callable | None = None) -> list[float]:
    """Train one epoch; returns the means of (fine, coarse, combined, w_fine, w_coarse).
    ``forward`` (default: ``model``) computes the two heads' logits, e.g. a compiled model.
    What the worker asked for (its :class:`Ready`) decides what each step computes."""
    forward = model if forward is None else forward
    ready = worker.ready
    if ready is None:
        raise RuntimeError("start the worker first")
    lr = optimizer.param_groups[0]["lr"]
    use_gramian = "gramian" in ready.capabilities
    use_accuracy = "batch_fine_acc" in ready.capabilities or "batch_coarse_acc" in ready.capabilities
    per_task = use_gramian or ready.head_loss  # the heads and the backbone are weighted apart
    params = list(model.parameters())
    if per_task:  # which losses reach each parameter: fixed by the topology, found once per epoch
        reach = task_reach(model)
        shared = [i for i, (f, c) in enumerate(zip(*reach)) if f and c]  # both losses reach them
        groups = (shared, [i for i in range(len(params)) if not (reach[0][i] and reach[1][i])])
        gramian_over = shared or list(range(len(params)))  # nothing shared: over every parameter, G01 = 0
    steps_per_epoch = loader.steps_per_epoch
    tally = _EpochTally()
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
        if use_accuracy:
            to_host.append((fine_logits.argmax(1) == y_fine).float().mean())
            to_host.append((coarse_logits.argmax(1) == y_coarse).float().mean())
        host = torch.stack(to_host).tolist()  # the one host synchronisation of the step
        fine_v, coarse_v = host[0], host[1]
        if not all(math.isfinite(v) for v in host):
            what = "task losses" if not (math.isfinite(fine_v) and math.isfinite(coarse_v)) else "task gradients"
            raise RunFailed(f"training diverged: the {what} became non-finite "
                            f"(fine loss={fine_v}, coarse loss={coarse_v}) at epoch {epoch}, step {step}")
        request = StepRequest(
            epoch=epoch, total_epochs=total_epochs, step=step, steps_per_epoch=steps_per_epoch, lr=lr,
            fine_loss=fine_v, coarse_loss=coarse_v,
            gramian=tuple(host[2:5]) if use_gramian else None,
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
        optimizer.step()
        tally.add(fine_v, coarse_v, reply.loss, reply.w_fine, reply.w_coarse)
        if on_step is not None:
            on_step()
    return tally.means()


@torch.no_grad()
def evaluate(model: TwoHeadNet, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], *,
             precision: str = "fp32", forward: Callable | None = None) -> tuple[float, float, float, float]:
    """Mean fine loss, mean coarse loss, fine accuracy (%), coarse accuracy (%)."""
    forward = model if forward is None else forward
    model.eval()
    totals = None
    n = 0
    for x, y_fine, y_coarse in batches:
        with autocast_context(precision, x.device.type):
            fine_logits, coarse_logits = forward(x)
        fine_logits, coarse_logits = fine_logits.float(), coarse_logits.float()
        batch = torch.stack([
            F.cross_entropy(fine_logits, y_fine, reduction="sum"),
            F.cross_entropy(coarse_logits, y_coarse, reduction="sum"),
            (fine_logits.argmax(1) == y_fine).sum().float(),
            (coarse_logits.argmax(1) == y_coarse).sum().float(),
        ])
        totals = batch if totals is None else totals + batch
        n += y_fine.numel()
    if totals is None:
        raise RuntimeError("empty test split")
    fine_loss, coarse_loss, fine_correct, coarse_correct = totals.tolist()
    return fine_loss / n, coarse_loss / n, 100.0 * fine_correct / n, 100.0 * coarse_correct / n


# -------------------------------------------------------------------------- one run


class TrainHooks:
    """What a run reports while it trains (the default does nothing). The executors turn these
    into events for the driver (:mod:`harness.executors.events`); tests use them to stop a run."""

    def started(self, total_steps: int) -> None: ...
    def resumed(self, epochs_done: int, steps_done: int, notes: list[str]) -> None: ...
    def step_done(self) -> None: ...
    def epoch_done(self, metrics: EpochMetrics, best_fine_acc: float) -> None: ...


@dataclass
class RunOutcome:
    result: RunResult
    history: list[EpochMetrics] = field(default_factory=list)
    model: TwoHeadNet | None = None
    loss_state: dict[str, list[float]] | None = None


def _fresh_model(spec: RunSpec, device: torch.device, dtype: torch.dtype
                 ) -> tuple[TwoHeadNet, torch.optim.Optimizer]:
    """The model as initialised by the run's seed, and its SGD optimizer."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.arch, topology=spec.topology).to(device, dtype)
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (torch's stubs lack it)
    opt = spec.profile.optimizer
    optimizer = torch.optim.SGD(model.parameters(), lr=opt.lr, momentum=opt.momentum,
                                weight_decay=opt.weight_decay, nesterov=opt.nesterov)
    return model, optimizer


def _restore(state: dict, model: TwoHeadNet, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Load a checkpoint's state (CPU tensors: the optimizer state follows its parameters' device;
    RNG states must stay CPU byte tensors, as ``set_rng_state`` requires on every device)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng_cpu"])
    if device.type == "cuda" and state.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(state["rng_cuda"], device)


def run_one(spec: RunSpec, *, submission: Path, train: Split, test: Split, run_dir: RunDir | Path,
            sandbox: Sandbox, hooks: TrainHooks | None = None) -> RunOutcome:
    """Train ``spec.arch`` with ``spec.seed`` and the submission's loss; never raises for
    a failure of the submission or the worker: the outcome is then ``failed``. Its files go
    into ``run_dir`` (:class:`~harness.rundir.RunDir`); an interrupted run resumes from its
    last checkpoint, a run the submission failed starts again from epoch 0.
    """
    hooks = hooks or TrainHooks()
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    profile = spec.profile
    run.start(spec)
    start = time.perf_counter()
    device = torch.device(spec.device)
    dtype = getattr(torch, spec.dtype)
    set_determinism(spec.deterministic, device)
    set_fp32_precision(spec.precision, device)
    checkpointer = Checkpointer(run.checkpoint, spec)
    resume, notes = checkpointer.load()  # never raises; tensors on the CPU
    model, optimizer = _fresh_model(spec, device, dtype)
    if resume is not None:
        try:
            _restore(resume.state, model, optimizer, device)
        except Exception as e:  # noqa: BLE001  (intact file, unusable content: e.g. written by another build)
            notes.append(f"the checkpoint after epoch {resume.epochs_done} cannot be used "
                         f"({type(e).__name__}: {e}); starting from scratch")
            resume = None
            model, optimizer = _fresh_model(spec, device, dtype)  # the failed restore may have changed it
    if resume is None:
        checkpointer.clear()
    run.restart_history(resume.history if resume is not None else [])

    forward = torch.compile(model) if spec.compile else model  # shares the parameters
    opt = profile.optimizer
    loader = TrainLoader(train, batch_size=profile.batch_size, seed=spec.seed, device=device,
                         padding=profile.crop_padding, flip=profile.horizontal_flip,
                         channels_last=spec.channels_last, dtype=dtype)
    test_batches = eval_batches(test, batch_size=profile.eval_batch_size, device=device,
                                channels_last=spec.channels_last, dtype=dtype)
    hooks.started(profile.epochs * loader.steps_per_epoch)
    first_epoch = 0
    history: list[EpochMetrics] = []
    if resume is not None:
        first_epoch, history = resume.epochs_done, list(resume.history)
    if resume is not None or notes:
        hooks.resumed(first_epoch, first_epoch * loader.steps_per_epoch, notes)
    loss_state = None
    try:
        with LossWorker(submission, sandbox=sandbox, seed=spec.seed, optimizer=opt, dtype=spec.dtype,
                        log_path=run.worker_log, start_timeout=profile.worker_start_timeout_s,
                        call_timeout=profile.worker_call_timeout_s,
                        run_budget=profile.worker_run_budget_s) as worker:
            try:
                worker.start()
            except WorkerError as e:
                raise RunFailed(f"starting the loss module: {e}") from e
            if resume is not None:
                try:  # the loss module's state is rebuilt from what the trainer sent, never loaded
                    worker.replay(resume.frames)
                except WorkerError as e:
                    raise RunFailed(f"replaying the first {first_epoch} epochs to the loss module: {e}") from e
            for epoch in range(first_epoch, profile.epochs):
                epoch_start = time.perf_counter()
                lr = opt.lr_at(epoch, profile.epochs)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                fine_l, coarse_l, combined, w_fine, w_coarse = train_one_epoch(
                    model, loader, optimizer, worker, epoch=epoch, total_epochs=profile.epochs, on_step=hooks.step_done,
                    precision=spec.precision, forward=forward)
                test_fine_l, test_coarse_l, fine_acc, coarse_acc = evaluate(
                    model, test_batches, precision=spec.precision, forward=forward)
                metrics = EpochMetrics(
                    epoch=epoch, lr=lr, train_fine_loss=fine_l, train_coarse_loss=coarse_l,
                    train_combined_loss=combined, weight_fine=w_fine, weight_coarse=w_coarse,
                    test_fine_loss=test_fine_l, test_coarse_loss=test_coarse_l,
                    test_fine_acc=fine_acc, test_coarse_acc=coarse_acc,
                    seconds=time.perf_counter() - epoch_start,
                )
                history.append(metrics)
                run.append_metrics(metrics)
                if epoch + 1 < profile.epochs:
                    checkpointer.save(epoch + 1, history, worker.sent_steps, {
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "rng_cpu": torch.get_rng_state(),
                        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None})
                hooks.epoch_done(metrics, max(m.test_fine_acc for m in history))
            try:
                loss_state = worker.state()
                run.write_loss_state(loss_state)
            except WorkerError:
                loss_state = None  # a report only; the run itself succeeded
        result = RunResult.from_epochs(history, time.perf_counter() - start)
        checkpointer.clear()
    except Exception as e:  # noqa: BLE001  (one run's failure must not stop the others)
        reason = as_user_path(str(e), submission) if isinstance(e, RunFailed) else (
            f"internal error at epoch {len(history)}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=-8)}")
        note = ""
        if isinstance(e, RunFailed):
            # the submission or its worker ended the run (an error, a crash, a limit, a divergence): the
            # next attempt starts from epoch 0, so failing on purpose cannot buy a re-draw of the epochs
            # since the last checkpoint (a killed process or a Ctrl-C, not RunFailed, still resumes)
            checkpointer.clear()
            note = "(a new attempt starts from epoch 0: failures caused by the submission are not resumed)\n"
        run.write_failure(f"{spec.submission} failed on {spec.arch}, seed {spec.seed}:\n{reason}\n{note}")
        result = RunResult.failed(reason.strip(), epochs_done=len(history), wall_seconds=time.perf_counter() - start)
    result = result.model_copy(update={"device": device_name(device)})
    run.write_result(result)
    return RunOutcome(result, history, model, loss_state)
