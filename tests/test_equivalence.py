"""The worker path gives the model exactly the gradient of the combined loss.

Reference: an in-process loop that puts the loss module's parameters into the model's
optimizer and backpropagates the combined loss in one graph (the task card's setup:
``zero_grad()`` to None, so a task the loss ignores leaves its head without a gradient and
SGD skips it). Worker path: ``run_one``, the function every evaluation uses. Same seed, same
data. Covered: a loss that ignores a task for an epoch or on some steps, the epoch and the
schedule, ``step``, the batch accuracies, the Gramian, learnable parameters, Python state.
"""

import importlib.util
import inspect

import pytest
import torch
import torch.nn.functional as F
from helpers import BASELINES, SUBMISSIONS, exact_profile, run_spec

from harness.isolation.sandbox import get_sandbox
from harness.training.data import TrainLoader
from harness.training.models import build_model
from harness.training.trainer import run_one

pytestmark = pytest.mark.slow  # trains: every test runs the trainer against an in-process reference


def _load(path):
    spec = importlib.util.spec_from_file_location(f"ref_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MultiTaskLoss


def reference_training(path, profile, train, seed, dtype, topology="shared"):
    torch.manual_seed(seed)
    model = build_model("resnet20", topology=topology).to(dtype=dtype, memory_format=torch.channels_last)
    torch.manual_seed(seed)  # the worker seeds torch before it builds the loss module
    loss_module = _load(path)().to(dtype)
    opt = profile.optimizer
    params = list(model.parameters()) + list(loss_module.parameters())
    optimizer = torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    loader = TrainLoader(
        train, batch_size=profile.batch_size, seed=seed, device=torch.device("cpu"), channels_last=True, dtype=dtype
    )
    wants = {p.name for p in inspect.signature(loss_module.forward).parameters.values() if p.kind == p.KEYWORD_ONLY}
    model.train()
    for epoch in range(profile.epochs):
        for group in optimizer.param_groups:
            group["lr"] = opt.lr_at(epoch, profile.epochs)
        for i, (x, y_fine, y_coarse) in enumerate(loader.epoch(epoch)):
            fine_logits, coarse_logits = model(x)
            fine = F.cross_entropy(fine_logits, y_fine)
            coarse = F.cross_entropy(coarse_logits, y_coarse)
            available = {
                "step": epoch * loader.steps_per_epoch + i,
                "steps_per_epoch": loader.steps_per_epoch,
                "batch_fine_acc": float((fine_logits.argmax(1) == y_fine).float().mean()),
                "batch_coarse_acc": float((coarse_logits.argmax(1) == y_coarse).float().mean()),
            }
            kwargs = {name: value for name, value in available.items() if name in wants}
            if "gramian" in wants:  # over the parameters both losses reach; all of them when none is
                model_params = list(model.parameters())
                per_task = [
                    torch.autograd.grad(t, model_params, retain_graph=True, allow_unused=True) for t in (fine, coarse)
                ]
                both = [f is not None and c is not None for f, c in zip(*per_task)]
                over = both if any(both) else [True] * len(both)
                g_f, g_c = (
                    torch.cat(
                        [
                            (g if g is not None else torch.zeros_like(p)).reshape(-1)
                            for g, p, keep in zip(grads, model_params, over)
                            if keep
                        ]
                    )
                    for grads in per_task
                )
                kwargs["gramian"] = torch.stack(
                    [torch.stack([g_f @ g_f, g_f @ g_c]), torch.stack([g_c @ g_f, g_c @ g_c])]
                ).detach()
            loss = loss_module(fine, coarse, epoch, profile.epochs, **kwargs)
            optimizer.zero_grad()  # to None: a parameter the loss does not reach is skipped by SGD
            loss.backward()
            optimizer.step()
    return model, loss_module


EXACT = dict(rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize(
    "path, param, precision, tol",
    [
        # Same graph on both sides: float32 agrees to rounding.
        (BASELINES / "uncertainty.py", "log_vars", "fp32", dict(rtol=1e-4, atol=2e-6)),
        # The Gramian path sums the per-task gradients after the backbone's backward, the
        # reference before it; in float32 the two orders round differently (both are ~5e-4 from
        # the float64 truth) and Gramian-driven weights amplify that over steps, so the exact
        # comparison runs in float64.
        (SUBMISSIONS / "gramian_mgda.py", "t", "fp64", EXACT),
        (BASELINES / "uncertainty.py", "log_vars", "fp64", EXACT),
        # a fine-only first epoch: the coarse head must get no gradient then (not a zero one)
        (SUBMISSIONS / "warmup_ignores_coarse.py", None, "fp64", EXACT),
        # epoch, step, batch accuracies, two learnable parameters, Python state, a task left out on some steps
        (SUBMISSIONS / "everything_inputs.py", "log_vars", "fp64", EXACT),
        # the same file in float32: the worker computes in float32 too, so the orders of operations match
        (SUBMISSIONS / "everything_inputs.py", "log_vars", "fp32", dict(rtol=1e-4, atol=2e-6)),
        # the per-task (Gramian) path with the coarse task left out for an epoch
        (SUBMISSIONS / "gramian_warmup.py", None, "fp64", EXACT),
        # in-place operations on the losses (the worker's inputs are non-leaf, as real losses are)
        (SUBMISSIONS / "inplace_scale.py", None, "fp64", EXACT),
    ],
    ids=[
        "uncertainty-fp32",
        "gramian-fp64",
        "uncertainty-fp64",
        "ignored-task-fp64",
        "every-input-fp64",
        "every-input-fp32",
        "gramian-ignored-task-fp64",
        "inplace-fp64",
    ],
)
def test_worker_path_equals_in_process_reference(path, param, precision, tol, small_splits, tmp_path):
    train, test = small_splits
    profile = exact_profile(epochs=2)
    spec = run_spec(profile).model_copy(update={"precision": precision})
    outcome = run_one(
        spec, submission=path, train=train, test=test, run_dir=tmp_path / "run", sandbox=get_sandbox("none")
    )
    assert outcome.result.status == "ok", outcome.result.reason
    dtype = getattr(torch, spec.dtype)
    ref_model, ref_loss = reference_training(path, profile, train, seed=42, dtype=dtype)

    got, want = outcome.model.state_dict(), ref_model.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], **tol, msg=key)
    # the training really moved the weights (and the heads)
    torch.manual_seed(42)
    fresh = build_model("resnet20").to(dtype).state_dict()
    for key in ("backbone.body.0.weight", "fine_head.weight", "coarse_head.weight"):
        assert (got[key] - fresh[key]).abs().max() > 1e-4, key
    if param is None:
        return
    for name, ref_param in ref_loss.named_parameters():
        worker_param = torch.tensor(outcome.loss_state[name], dtype=dtype)
        torch.testing.assert_close(worker_param, ref_param.detach().reshape(-1), **tol, msg=name)
    ref_param = getattr(ref_loss, param).detach().reshape(-1)
    initial = getattr(_load(path)(), param).detach().reshape(-1).to(dtype)
    assert (ref_param - initial).abs().max() > 1e-3


GRAMIAN, PLAIN = SUBMISSIONS / "gramian_warmup.py", SUBMISSIONS / "warmup_ignores_coarse.py"


@pytest.mark.parametrize(
    "path, topology",
    [
        *(
            (GRAMIAN, t)
            for t in ("independent", "reuse-coarse", "reuse-fine", "shared-reuse-coarse", "shared-reuse-fine")
        ),
        *((PLAIN, t) for t in ("independent", "reuse-coarse", "shared-reuse-fine")),
    ],
    ids=lambda v: v.stem if hasattr(v, "stem") else v,
)
def test_worker_path_equals_in_process_reference_in_every_topology(path, topology, small_splits, tmp_path):
    """Seed 003's topologies: the exactness and idle-head guarantees hold whatever the network shares
    (fp64, every parameter), on the per-task (Gramian) path in each topology and on the plain path
    in three, with the coarse task left out for the first epoch."""
    train, test = small_splits
    train = train.head(32)  # two steps an epoch
    profile = exact_profile(epochs=2)
    spec = run_spec(profile).model_copy(update={"precision": "fp64", "topology": topology})
    outcome = run_one(
        spec, submission=path, train=train, test=test, run_dir=tmp_path / "run", sandbox=get_sandbox("none")
    )
    assert outcome.result.status == "ok", outcome.result.reason
    ref_model, _ = reference_training(path, profile, train, seed=42, dtype=torch.float64, topology=topology)
    got, want = outcome.model.state_dict(), ref_model.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], **EXACT, msg=key)
    torch.manual_seed(42)
    fresh = build_model("resnet20", topology=topology).to(torch.float64).state_dict()
    moved = [
        k
        for k in ("backbone.body.0.weight", "coarse_backbone.body.0.weight", "fine_head.weight", "coarse_head.weight")
        if k in want
    ]
    for key in moved:
        assert (got[key] - fresh[key]).abs().max() > 1e-4, key


def test_an_ignored_task_differs_from_a_zero_weighted_one(small_splits, tmp_path):
    """The distinction the exactness rests on, seen from outside: with weight decay, a head whose task
    the loss ignores (no gradient) ends elsewhere than one whose task is weighted by 0 (zero gradient)."""
    train, test = small_splits
    profile = exact_profile(epochs=1)
    spec = run_spec(profile).model_copy(update={"precision": "fp64"})
    ignored = tmp_path / "ignored.py"
    ignored.write_text(
        "import torch.nn as nn\n\nclass MultiTaskLoss(nn.Module):\n"
        "    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):\n        return fine_loss\n"
    )
    zero = tmp_path / "zero.py"
    zero.write_text(
        "import torch.nn as nn\n\nclass MultiTaskLoss(nn.Module):\n"
        "    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):\n"
        "        return fine_loss + 0.0 * coarse_loss\n"
    )
    heads = {}
    for path in (ignored, zero):
        outcome = run_one(
            spec, submission=path, train=train, test=test, run_dir=tmp_path / path.stem, sandbox=get_sandbox("none")
        )
        assert outcome.result.status == "ok", outcome.result.reason
        heads[path.stem] = outcome.model.coarse_head.weight.detach()
    torch.manual_seed(42)
    initial = build_model("resnet20").to(torch.float64).coarse_head.weight.detach()
    torch.testing.assert_close(heads["ignored"], initial, rtol=0, atol=0)  # untouched: no decay, no step
    assert (heads["zero"] - initial).abs().max() > 0  # weight decay moved it


def test_head_loss_without_the_gramian_trains_the_heads_on_it(small_splits, tmp_path):
    """The per-task path taken for a head loss alone: the backbone follows ``forward``, the heads
    follow ``head_loss`` (which leaves the coarse head out on odd steps); reference: autograd of
    ``forward``'s loss for the backbone and of ``head_loss`` for the heads, in one process."""
    train, test = small_splits
    path = SUBMISSIONS / "head_loss_plain.py"
    profile = exact_profile(epochs=2)
    spec = run_spec(profile).model_copy(update={"precision": "fp64"})
    outcome = run_one(
        spec, submission=path, train=train, test=test, run_dir=tmp_path / "run", sandbox=get_sandbox("none")
    )
    assert outcome.result.status == "ok", outcome.result.reason

    torch.manual_seed(42)
    model = build_model("resnet20").to(dtype=torch.float64, memory_format=torch.channels_last)
    loss_module = _load(path)()
    opt = profile.optimizer
    optimizer = torch.optim.SGD(model.parameters(), lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    loader = TrainLoader(
        train,
        batch_size=profile.batch_size,
        seed=42,
        device=torch.device("cpu"),
        channels_last=True,
        dtype=torch.float64,
    )
    shared, heads = list(model.backbone_parameters()), list(model.head_parameters())
    model.train()
    for epoch in range(profile.epochs):
        for group in optimizer.param_groups:
            group["lr"] = opt.lr_at(epoch, profile.epochs)
        for i, (x, y_fine, y_coarse) in enumerate(loader.epoch(epoch)):
            fine_logits, coarse_logits = model(x)
            fine, coarse = F.cross_entropy(fine_logits, y_fine), F.cross_entropy(coarse_logits, y_coarse)
            loss = loss_module(fine, coarse, epoch, profile.epochs, step=epoch * loader.steps_per_epoch + i)
            head = loss_module.head_loss(fine, coarse)
            optimizer.zero_grad()
            for p, g in zip(shared, torch.autograd.grad(loss, shared, retain_graph=True)):
                p.grad = g
            for p, g in zip(heads, torch.autograd.grad(head, heads, allow_unused=True)):
                p.grad = g  # None for the coarse head on odd steps: SGD skips it
            optimizer.step()
    got, want = outcome.model.state_dict(), model.state_dict()
    for key in want:
        torch.testing.assert_close(got[key], want[key], **EXACT, msg=key)
