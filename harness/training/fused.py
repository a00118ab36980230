"""Fused seeds: the runs of one (entry, architecture, settings) that differ only in their seed,
trained as one model, the way HFTA fuses repeated trainings, through ``torch.func``.

Each seed keeps everything a separate run has: its model (initialised by its seed, exactly as its
separate run), its data order and augmentation (its own :class:`~harness.training.data.TrainLoader`),
its BatchNorm statistics, its optimizer and its loss worker. Only the arithmetic is shared: per step
the seeds' parameters are stacked (differentiably: each seed's leaves receive their own gradient)
and the model's code runs once under ``torch.vmap``, which turns each convolution into one grouped
convolution over the seeds and normalises each seed's channels with that seed's own batch statistics.
The seeds' BatchNorm buffers are views of stacked tensors, so the running statistics that BatchNorm
updates under ``vmap`` land in each seed's own buffers. The seeds' worker round trips overlap (all
requests sent, then all replies read), and one host synchronisation per step serves every seed.

It is an exact reorganisation: the seeds are independent (no parameter, buffer or loss is shared),
so the gradient of the summed losses with respect to one seed's parameters is that seed's gradient;
a parameter that no loss its seed's reply uses reaches gets no gradient, as in a separate run (the
stacking hands it zeros, which are dropped). Only the float rounding of the grouped kernels differs
(``tests/test_fused.py`` compares every parameter of every seed with separate runs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from harness.errors import RunFailed
from harness.isolation.client import LossWorker, StepReply, StepRequest, WorkerError
from harness.training.compiled import compile_function
from harness.training.data import TrainLoader
from harness.training.device import autocast_context
from harness.training.evaluation import TestMetrics
from harness.training.gradients import _backward_per_task, _drop_unreached, _gramian, _head_sq_norms, _reached_gradients
from harness.training.models import TwoHeadNet, task_reach
from harness.training.sgd import Optimizer
from harness.training.steplog import StepLog
from harness.training.trainer import Carry, TrainMeans


class FusedNet:
    """The seeds' models computed as one (see the module's docstring). ``active``: the seeds still
    training (a seed whose run failed leaves the computation; the others go on)."""

    def __init__(self, models: list[TwoHeadNet]) -> None:
        self.models = models
        self.template = models[0]  # the code every seed runs; its own tensors are never used
        self.names = [n for n, _ in self.template.named_parameters()]
        self.active = list(range(len(models)))
        self._forward_fn: Callable = _fused_forward(self.template, self.names)
        self._bind()

    def _bind(self) -> None:
        """Stack the active seeds' buffers and make each seed's buffers views of the stack."""
        self.params: list[list[torch.Tensor]] = [
            [dict(self.models[s].named_parameters())[n] for s in self.active] for n in self.names
        ]
        self.buffers: dict[str, torch.Tensor] = {}
        for name, _ in self.template.named_buffers():
            stacked = torch.stack([self.models[s].get_buffer(name) for s in self.active])
            module, _, leaf = name.rpartition(".")
            for i, s in enumerate(self.active):
                self.models[s].get_submodule(module)._buffers[leaf] = stacked[i]
            self.buffers[name] = stacked

    def drop(self, seeds: list[int]) -> None:
        """The seeds (positions) whose runs ended: the others go on without them."""
        self.active = [s for s in self.active if s not in seeds]
        if self.active:
            self._bind()

    def train(self, mode: bool = True) -> None:
        for m in self.models:
            m.train(mode)

    def __call__(self, x: torch.Tensor, *, shared_input: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Both heads' logits of every active seed, stacked: ``x`` is ``(seeds, batch, ...)``, one
        batch per seed, or one batch for all (``shared_input``: the test split)."""
        return self._forward_fn(self.params, self.buffers, x, shared_input)

    def compile(self) -> None:
        """The fused step's forward (the stacking included) through ``torch.compile`` from now on
        (:mod:`harness.training.compiled`); gradients still reach each seed's own parameters, and a
        head no used loss reaches still gets none (the trainer drops what the stacking hands it)."""
        self._forward_fn = compile_function(_fused_forward(self.template, self.names))


def _fused_forward(template: TwoHeadNet, names: list[str]) -> Callable:
    """The function a fused step calls: stack each parameter over the seeds, then run ``template``'s
    code once under ``vmap`` with the stacked parameters and buffers."""

    def one(params: dict, buffers: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return functional_call(template, (params, buffers), (x,))

    def forward(params: list, buffers: dict, x: torch.Tensor, shared_input: bool):
        stacked = {n: torch.stack(ps) for n, ps in zip(names, params)}
        return torch.vmap(one, in_dims=(0, 0, None if shared_input else 0))(stacked, buffers, x)

    return forward


@dataclass
class Seed:
    """What one seed's run brings to the fused epoch (its position ``s`` in the fused model)."""

    s: int
    loader: TrainLoader
    optimizer: Optimizer
    worker: LossWorker
    log: StepLog | None
    means: TrainMeans  # this epoch's
    carry: Carry
    on_step: Callable[[], None]


def train_fused_epoch(
    fused: FusedNet, seeds: list[Seed], *, epoch: int, total_epochs: int, precision: str
) -> dict[int, RunFailed]:
    """One epoch of every active seed (``seeds``: theirs, in the fused model's order); each seed's
    ``means``, ``carry`` and log are updated as :func:`~harness.training.trainer.train_one_epoch`
    does for one run. Returns the seeds whose runs failed on the way (by position: a worker error,
    a divergence), which have left the fused model; the others finished the epoch."""
    ready = seeds[0].worker.ready
    if ready is None:
        raise RuntimeError("train_fused_epoch needs started workers")
    caps = ready.capabilities  # one file: every seed asked for the same inputs
    use_gramian, use_head_norms = "gramian" in caps, "head_sq_norms" in caps
    use_accuracy = "batch_fine_acc" in caps or "batch_coarse_acc" in caps
    use_after = "previous_losses_after_update" in caps
    per_task = use_gramian or use_head_norms or ready.head_loss
    reach = task_reach(fused.template)  # the topology's: the same for every seed
    shared = [i for i, (f, c) in enumerate(zip(*reach)) if f and c]
    groups = (shared, [i for i in range(len(reach[0])) if not (reach[0][i] and reach[1][i])])
    gramian_over = shared or list(range(len(reach[0])))
    own = ([i for i in groups[1] if reach[0][i]], [i for i in groups[1] if reach[1][i]]) if shared else ([], [])
    params = {seed.s: list(fused.models[seed.s].parameters()) for seed in seeds}
    lr = seeds[0].optimizer.param_groups[0]["lr"]
    steps_per_epoch = seeds[0].loader.steps_per_epoch
    batches = {seed.s: seed.loader.epoch(epoch) for seed in seeds}
    failed: dict[int, RunFailed] = {}
    fused.train()
    for i in range(steps_per_epoch):
        live = [seed for seed in seeds if seed.s not in failed]
        if not live:
            break
        step = epoch * steps_per_epoch + i
        drawn = [next(batches[seed.s]) for seed in live]
        x, y_fine, y_coarse = (torch.stack([b[k] for b in drawn]) for k in range(3))
        with autocast_context(precision, x.device.type):
            fine_logits, coarse_logits = fused(x)
            fine = torch.vmap(F.cross_entropy)(fine_logits, y_fine)  # (seeds,), float32 under autocast
            coarse = torch.vmap(F.cross_entropy)(coarse_logits, y_coarse)
        for seed in live:
            seed.optimizer.zero_grad(set_to_none=True)
        if per_task:  # each seed's loss reaches only its own parameters: one backward per task for all
            flat = [p for seed in live for p in params[seed.s]]
            g_f = torch.autograd.grad(fine.sum(), flat, retain_graph=True, allow_unused=True)
            g_c = torch.autograd.grad(coarse.sum(), flat, allow_unused=True)
            n = len(params[live[0].s])
            task_grads = [
                _reached_gradients(g_f[k * n : (k + 1) * n], g_c[k * n : (k + 1) * n], reach) for k in range(len(live))
            ]
        to_host = []
        for k, seed in enumerate(live):
            to_host += [fine[k].detach(), coarse[k].detach()]
            if use_gramian:
                to_host.extend(_gramian(*task_grads[k], gramian_over))
            if use_head_norms:
                to_host.extend(_head_sq_norms(*task_grads[k], own, x.device))
            if use_after:
                after = seed.carry.after_losses  # None only at a run's first step, for every seed alike
                to_host.extend(after if after is not None else torch.zeros(2, device=x.device))
            if use_accuracy:
                to_host.append((fine_logits[k].argmax(1) == y_fine[k]).float().mean())
                to_host.append((coarse_logits[k].argmax(1) == y_coarse[k]).float().mean())
        host = torch.stack(to_host).tolist()  # the one host synchronisation of the step, for every seed
        width = len(host) // len(live)
        requests: dict[int, StepRequest] = {}
        for k, seed in enumerate(live):
            values = host[k * width : (k + 1) * width]
            request = _request(values, seed, epoch, total_epochs, step, steps_per_epoch, lr, caps, ready.head_loss)
            if isinstance(request, RunFailed):
                failed[seed.s] = request
                continue
            try:
                seed.worker.send_step(request)
                requests[seed.s] = request
            except WorkerError as e:
                failed[seed.s] = RunFailed(f"epoch {epoch}, step {step}: {e}")
        replies: dict[int, StepReply] = {}
        for seed in live:  # every request is out: the workers compute at once
            if seed.s in requests:
                try:
                    replies[seed.s] = seed.worker.receive_step()
                except WorkerError as e:
                    failed[seed.s] = RunFailed(f"epoch {epoch}, step {step}: {e}")
        if per_task:
            for k, seed in enumerate(live):
                if seed.s in replies:
                    _backward_per_task(params[seed.s], groups, *task_grads[k], replies[seed.s])
        else:
            terms = [
                t * w
                for k, seed in enumerate(live)
                if seed.s in replies
                for t, w, used in (
                    (fine[k], replies[seed.s].w_fine, replies[seed.s].uses_fine),
                    (coarse[k], replies[seed.s].w_coarse, replies[seed.s].uses_coarse),
                )
                if used
            ]
            if terms:
                torch.stack(terms).sum().backward()
        for seed in live:
            if seed.s in replies:  # the stacking hands zeros to what no used loss reaches: drop them
                _drop_unreached(params[seed.s], reach, replies[seed.s])
                seed.optimizer.step()
        ended = [s for s in failed if s in fused.active]
        if ended:
            fused.drop(ended)
        done = [(k, seed) for k, seed in enumerate(live) if seed.s in replies and seed.s not in failed]
        if use_after and done:  # the same batches after the update, as FAMO's official loop measures them
            keep = torch.tensor([k for k, _ in done], device=x.device)
            after_all = _losses_after_update(fused, x[keep], y_fine[keep], y_coarse[keep], precision)
            for j, (_, seed) in enumerate(done):
                seed.carry.after_losses = after_all[:, j].clone()
        for _, seed in done:
            request, reply = requests[seed.s], replies[seed.s]
            seed.means.add(request.fine_loss, request.coarse_loss, reply)
            if seed.log is not None:
                try:
                    seed.log.step(i, request, reply)
                except RunFailed as e:
                    failed[seed.s] = e
                    fused.drop([seed.s])
                    continue
            seed.on_step()
    return failed


def _request(
    values: list[float],
    seed: Seed,
    epoch: int,
    total_epochs: int,
    step: int,
    steps_per_epoch: int,
    lr: float,
    caps: Collection[str],
    head_loss: bool,
) -> StepRequest | RunFailed:
    """One seed's request from its host values (laid out as the single-run trainer lays them out),
    or its divergence."""
    fine_v, coarse_v = values[0], values[1]
    if not all(math.isfinite(v) for v in values):
        what = "task losses" if not (math.isfinite(fine_v) and math.isfinite(coarse_v)) else "task gradients"
        return RunFailed(
            f"training diverged: the {what} became non-finite "
            f"(fine loss={fine_v}, coarse loss={coarse_v}) at epoch {epoch}, step {step}"
        )
    use_gramian, use_head_norms = "gramian" in caps, "head_sq_norms" in caps
    after = seed.carry.after_losses if "previous_losses_after_update" in caps else None
    at = 2 + 3 * use_gramian
    return StepRequest(
        epoch=epoch,
        total_epochs=total_epochs,
        step=step,
        steps_per_epoch=steps_per_epoch,
        lr=lr,
        fine_loss=fine_v,
        coarse_loss=coarse_v,
        gramian=(values[2], values[3], values[4]) if use_gramian else None,
        head_sq_norms=(values[at], values[at + 1]) if use_head_norms else None,
        after_losses=(values[at + 2 * use_head_norms], values[at + 2 * use_head_norms + 1])
        if after is not None
        else None,
        batch_accuracy=(values[-2], values[-1]) if ("batch_fine_acc" in caps or "batch_coarse_acc" in caps) else None,
    )


@torch.no_grad()
def _losses_after_update(
    fused: FusedNet, x: torch.Tensor, y_fine: torch.Tensor, y_coarse: torch.Tensor, precision: str
) -> torch.Tensor:
    """The second forward pass on each seed's batch after the update, in training mode: ``(2, seeds)``."""
    with autocast_context(precision, x.device.type):
        fine_logits, coarse_logits = fused(x)
        return torch.stack(
            [torch.vmap(F.cross_entropy)(fine_logits, y_fine), torch.vmap(F.cross_entropy)(coarse_logits, y_coarse)]
        )


@torch.no_grad()
def evaluate_fused(
    fused: FusedNet, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], *, precision: str = "fp32"
) -> list[TestMetrics]:
    """Every active seed's model on the test split (``batches``, the same for every seed), in the
    order of ``fused.active``."""
    fused.train(False)
    totals = None
    n = 0
    for x, y_fine, y_coarse in batches:
        with autocast_context(precision, x.device.type):
            fine_logits, coarse_logits = fused(x, shared_input=True)
        fine_logits, coarse_logits = fine_logits.float(), coarse_logits.float()
        batch = torch.stack(
            [
                torch.vmap(F.cross_entropy, in_dims=(0, None))(fine_logits, y_fine, reduction="sum"),
                torch.vmap(F.cross_entropy, in_dims=(0, None))(coarse_logits, y_coarse, reduction="sum"),
                (fine_logits.argmax(2) == y_fine).sum(1).float(),
                (coarse_logits.argmax(2) == y_coarse).sum(1).float(),
            ],
            dim=1,
        )
        totals = batch if totals is None else totals + batch
        n += y_fine.numel()
    if totals is None:
        raise RunFailed("the test split is empty")
    return [
        TestMetrics(fine_loss / n, coarse_loss / n, 100.0 * fine_correct / n, 100.0 * coarse_correct / n)
        for fine_loss, coarse_loss, fine_correct, coarse_correct in totals.tolist()
    ]
