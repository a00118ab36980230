"""The baselines that reproduce the implementations behind published rows, trained end to end through
the harness (the real worker, tiny profile, float64, two epochs, lr 0.1, no sandbox), against those
implementations written here from their descriptions and run in one process from the same seed and
data: every parameter and buffer of the model must end the same (1e-9).

References, independent of the baseline files and of the harness's per-task gradient path:

* the benchmark task's baseline fills of ``MultiTaskLoss`` as the write-up of its fixed training code
  describes them (``uncertainty``, ``dwa`` per batch, ``pcgrad`` with its parameters collected by
  walking ``fine_loss``'s autograd graph, so that the coarse head is never trained), in the task's
  loop: the module's parameters in the model's SGD, ``.backward()`` on what it returns;
* FAMO's official algorithm (Cranial-XIX/FAMO, ``methods/weight_methods.py`` and
  ``experiments/*/trainer.py``): ``get_weighted_loss``, the model's step, a second forward pass on
  the same batch in training mode without gradient, ``update`` with ``torch.optim.Adam`` on the
  logits. Its tensors take float64 here (the official code's follow the default dtype); the loss is
  doubled, the scale ``famo.py`` documents (weights summing to 2).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import BASELINES, exact_profile, run_spec

from harness.isolation.sandbox import get_sandbox
from harness.training.data import TrainLoader
from harness.training.models import build_model
from harness.training.trainer import run_one

F64 = torch.float64
EXACT = dict(rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------- the published fills, as described


class UncertaintyFill(nn.Module):
    def __init__(self, num_tasks=2):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(num_tasks))

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        losses = [fine_loss, coarse_loss]
        return sum(torch.exp(-self.log_vars[i]) * losses[i] + self.log_vars[i] for i in range(2))


class DWAFill(nn.Module):
    def __init__(self, num_tasks=2):
        super().__init__()
        self.prev = None

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        now = torch.stack([fine_loss, coarse_loss]).detach()
        if self.prev is None or epoch == 0:
            weights = torch.ones(2, dtype=now.dtype)
        else:
            ratios = now / (self.prev + 1e-8)
            weights = 2 * F.softmax(ratios / 2, dim=0)
        self.prev = now  # overwritten on every call, epoch 0 included
        return weights[0] * fine_loss + weights[1] * coarse_loss


def graph_leaves(loss):
    """Every leaf that requires grad in ``loss``'s graph, by walking ``grad_fn.next_functions``."""
    found, seen, todo = [], set(), [loss.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        variable = getattr(fn, "variable", None)
        if variable is not None and variable.requires_grad and all(variable is not p for p in found):
            found.append(variable)
        todo.extend(next_fn for next_fn, _ in fn.next_functions)
    return found


class PCGradFill(nn.Module):
    def __init__(self, num_tasks=2):
        super().__init__()
        self.shared = None
        self.conflicts = 0  # how often the projection branch ran (for the test)

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        if self.shared is None:
            self.shared = graph_leaves(fine_loss)
        flat = []
        for loss in (fine_loss, coarse_loss):
            grads = torch.autograd.grad(loss, self.shared, retain_graph=True, allow_unused=True)
            flat.append(
                torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, self.shared)])
            )
        g0, g1 = flat
        dot = g0 @ g1
        if dot < 0:
            self.conflicts += 1
            g0, g1 = g0 - dot / (g1 @ g1 + 1e-12) * g1, g1 - dot / (g0 @ g0 + 1e-12) * g0
        g = g0 + g1
        out, i = 0, 0
        for p in self.shared:
            out = out + (g[i : i + p.numel()].view_as(p).detach() * p).sum()
            i += p.numel()
        return out


class OfficialFAMO:
    """``methods/weight_methods.py``'s FAMO (gamma 0.01, w_lr 0.025), its tensors in float64."""

    def __init__(self, n_tasks=2, gamma=0.01, w_lr=0.025):
        self.min_losses = torch.zeros(n_tasks, dtype=F64)
        self.w = torch.tensor([0.0] * n_tasks, dtype=F64, requires_grad=True)
        self.w_opt = torch.optim.Adam([self.w], lr=w_lr, weight_decay=gamma)

    def get_weighted_loss(self, losses):
        self.prev_loss = losses
        z = F.softmax(self.w, -1)
        D = losses - self.min_losses + 1e-8
        c = (z / D).sum().detach()
        return (D.log() * z / c).sum()

    def update(self, curr_loss):
        delta = (self.prev_loss - self.min_losses + 1e-8).log() - (curr_loss - self.min_losses + 1e-8).log()
        with torch.enable_grad():
            d = torch.autograd.grad(F.softmax(self.w, -1), self.w, grad_outputs=delta.detach())[0]
        self.w_opt.zero_grad()
        self.w.grad = d
        self.w_opt.step()


# ------------------------------------------------------------------------------ the loops


def _setup(profile, train, seed, topology="shared"):
    torch.manual_seed(seed)
    model = build_model("resnet20", topology=topology).to(dtype=F64, memory_format=torch.channels_last)
    loader = TrainLoader(
        train, batch_size=profile.batch_size, seed=seed, device=torch.device("cpu"), channels_last=True, dtype=F64
    )
    return model, loader


def task_loop(fill, profile, train, seed=42, topology="shared"):
    """The task's fixed training code: the module's parameters in the model's SGD, ``.backward()``
    on what it returns, ``zero_grad()`` to None."""
    model, loader = _setup(profile, train, seed, topology)
    module = fill().to(F64)
    opt = profile.optimizer
    optimizer = torch.optim.SGD(
        list(model.parameters()) + list(module.parameters()),
        lr=opt.lr,
        momentum=opt.momentum,
        weight_decay=opt.weight_decay,
    )
    model.train()
    for epoch in range(profile.epochs):
        for group in optimizer.param_groups:
            group["lr"] = opt.lr_at(epoch, profile.epochs)
        for x, y_fine, y_coarse in loader.epoch(epoch):
            fine_logits, coarse_logits = model(x)
            loss = module(
                F.cross_entropy(fine_logits, y_fine), F.cross_entropy(coarse_logits, y_coarse), epoch, profile.epochs
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model, module


def famo_loop(profile, train, seed=42):
    """The official FAMO experiments' loop (``experiments/celeba/trainer.py``), the loss doubled."""
    model, loader = _setup(profile, train, seed)
    famo = OfficialFAMO()
    opt = profile.optimizer
    optimizer = torch.optim.SGD(model.parameters(), lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    logits = []
    for epoch in range(profile.epochs):
        for group in optimizer.param_groups:
            group["lr"] = opt.lr_at(epoch, profile.epochs)
        model.train()
        for x, y_fine, y_coarse in loader.epoch(epoch):
            out = model(x)
            losses = torch.stack([F.cross_entropy(out[0], y_fine), F.cross_entropy(out[1], y_coarse)])
            optimizer.zero_grad()
            (2 * famo.get_weighted_loss(losses)).backward()
            optimizer.step()
            with torch.no_grad():
                out = model(x)
                new_losses = torch.stack([F.cross_entropy(out[0], y_fine), F.cross_entropy(out[1], y_coarse)])
                famo.update(new_losses.detach())
            logits.append(famo.w.detach().clone())
    return model, logits


# ------------------------------------------------------------------------------ the tests


def _harness_run(name, profile, train, test, tmp_path, topology="shared"):
    spec = run_spec(profile, submission=f"{name}.py").model_copy(update={"precision": "fp64", "topology": topology})
    outcome = run_one(
        spec,
        submission=BASELINES / f"{name}.py",
        train=train,
        test=test,
        run_dir=tmp_path / name,
        sandbox=get_sandbox("none"),
    )
    assert outcome.result.status == "ok", outcome.result.reason
    return outcome


def _initial(topology="shared"):
    torch.manual_seed(42)
    return build_model("resnet20", topology=topology).to(F64).state_dict()


def _assert_same_model(got, want):
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], **EXACT, msg=key)


@pytest.fixture
def profile():
    return exact_profile(epochs=2)


@pytest.fixture
def splits(small_splits):
    return small_splits


@pytest.mark.slow
@pytest.mark.parametrize("name, fill", [("uncertainty", UncertaintyFill), ("dwa_batch", DWAFill)])
def test_loss_weighting_fills_are_reproduced(name, fill, profile, splits, tmp_path):
    train, test = splits
    outcome = _harness_run(name, profile, train, test, tmp_path)
    model, module = task_loop(fill, profile, train)
    _assert_same_model(outcome.model.state_dict(), model.state_dict())
    initial = _initial()
    for key in ("backbone.body.0.weight", "fine_head.weight", "coarse_head.weight"):
        assert (model.state_dict()[key] - initial[key]).abs().max() > 1e-4, key  # the reference really trained it
    for param_name, param in module.named_parameters():
        torch.testing.assert_close(
            torch.tensor(outcome.loss_state[param_name], dtype=F64), param.detach().reshape(-1), **EXACT
        )
        assert param.detach().abs().max() > 1e-3  # the module's parameters moved


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["shared", "shared-reuse-coarse", "reuse-fine"])
def test_pcgrad_mlsbench_is_the_published_fill_coarse_head_untrained(topology, profile, splits, tmp_path):
    """In the task's topology the fill's list (what ``fine_loss`` reaches) leaves out the coarse head;
    with the coarse head feeding the fine one it holds it; with two backbones and the coarse head
    reading the fine logits it leaves out the coarse network."""
    train, test = splits
    outcome = _harness_run("pcgrad_mlsbench", profile, train, test, tmp_path, topology)
    model, module = task_loop(PCGradFill, profile, train, topology=topology)
    assert module.conflicts > 0  # the projection branch ran
    got, want, initial = outcome.model.state_dict(), model.state_dict(), _initial(topology)
    _assert_same_model(got, want)
    in_list = {name for name, p in model.named_parameters() if any(p is q for q in module.shared)}
    frozen = {name for name, _ in model.named_parameters()} - in_list
    assert ("coarse_head.weight" in frozen) == (topology != "shared-reuse-coarse") and "fine_head.weight" in in_list
    for key in frozen:  # never a gradient: no weight decay, no momentum, bit for bit the initial weights
        assert torch.equal(got[key], initial[key]) and torch.equal(want[key], initial[key]), key
    for key in in_list:
        assert (want[key] - initial[key]).abs().max() > 1e-6, key


@pytest.mark.slow
def test_famo_is_the_official_algorithm(profile, splits, tmp_path):
    train, test = splits
    outcome = _harness_run("famo", profile, train, test, tmp_path)
    model, logits = famo_loop(profile, train)
    _assert_same_model(outcome.model.state_dict(), model.state_dict())  # batch-norm running stats included
    # the logits moved, and the harness's module holds the official logits before the run's last update
    assert logits[-2].abs().max() > 1e-3
    torch.testing.assert_close(torch.tensor(outcome.loss_state["attr:xi"], dtype=F64), logits[-2], **EXACT)
    # the cheaper next-batch variant is a different method: the same comparison tells it apart
    cheap = _harness_run("famo_next_batch", profile, train, test, tmp_path).model.state_dict()
    assert (
        max(float((cheap[k] - model.state_dict()[k]).abs().max()) for k in cheap if cheap[k].is_floating_point()) > 1e-6
    )
