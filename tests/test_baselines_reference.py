"""Every gradient-level baseline, trained end to end through the harness (tiny profile, float64, two
epochs of two steps of 16 images, lr 0.1, no sandbox), against a reference implementation of its
method trained in-process from the same seed and data: every parameter of the model (shared
backbone and both heads) must end the same.

References, independent of the baseline files and of the harness's Gramian path:

* TorchJD's ``mtl_backward`` + ``jac_to_grad`` with the method's aggregator (UPGrad, PCGrad,
  IMTL-G, Aligned-MTL; for CAGrad an aggregator written here from the paper, see ``ExactCAGrad``):
  the aggregator combines the shared parameters' Jacobian, each head gets its own task's gradient.
  Scale conventions differ only by the constant factor each baseline documents (e.g. TorchJD's
  MGDA weights sum to 1, the baseline's to 2); the factor is applied to
  the aggregator's output. Regularisation epsilons are cut to ~1e-12 (TorchJD's default 1e-4 ridge
  moves the weights by up to 1e-2).
* For the methods TorchJD lacks, or whose official code differs from ``mtl_backward``: the official
  code's steps written out with autograd on the gradient vectors themselves. MGDA (official code:
  the heads are weighted by the min-norm weights; the weights from TorchJD's solver), Nash-MTL
  (official code: the heads are weighted by alpha, the shared gradient clipped to norm 1 after the
  backward; alpha from scipy's root finder, not the closed form), DB-MTL (LibMTL, with beta = 0 as
  the file documents) and GradNorm (no official code: LibMTL's weight update, heads weighted as in
  the paper).
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import BASELINES, exact_profile, run_spec
from scipy import optimize
from torchjd.aggregation import IMTLG, Aggregator, AlignedMTL, MGDAWeighting, PCGrad, UPGrad
from torchjd.autojac import jac_to_grad, mtl_backward
from torchjd.linalg import QuadprogProjector

from harness.isolation.sandbox import get_sandbox
from harness.training.data import TrainLoader
from harness.training.models import build_model
from harness.training.trainer import run_one

F64 = torch.float64
EXACT = dict(rtol=1e-9, atol=1e-12)


def _flat(grads):
    return torch.cat([g.reshape(-1) for g in grads])


def _set_shared_grad(shared, vector):
    i = 0
    for p in shared:
        p.grad = vector[i : i + p.numel()].view_as(p).clone()
        i += p.numel()


# ------------------------------------------------------------------------ reference steps


def torchjd_step(aggregator, factor=1.0):
    """``mtl_backward`` + ``jac_to_grad`` with ``aggregator``, its output times ``factor``."""
    if factor != 1.0:
        aggregator.register_forward_hook(lambda module, inputs, output: output * factor)

    def step(model, features, fine, coarse, state):
        mtl_backward([fine, coarse], features=features)
        jac_to_grad(list(model.backbone.parameters()), aggregator)

    return step


class ExactCAGrad(Aggregator):
    """CAGrad (Algorithm 1 of the paper) on the Jacobian's rows, its inner problem solved to machine
    precision: scipy's bounded Brent search, then Newton steps on the derivative (the objective is
    flat at its minimum, so a search alone stops ~1e-8 short). Times 2 / (1 + c^2), the official
    code's scale. (TorchJD's CAGrad solves the inner problem with a conic solver to ~1e-5, which two
    epochs amplify past any useful tolerance; it is compared with the file in
    ``test_baselines_gramian.py``.)"""

    def forward(self, matrix):
        g_f, g_c = matrix[0], matrix[1]
        g0 = (g_f + g_c) / 2
        k = C * float(g0.norm())
        d = g_f - g_c

        def f(x):
            return float((g_c + x * d) @ g0) + k * float((g_c + x * d).norm())

        x = optimize.minimize_scalar(f, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-12}).x
        for _ in range(5):
            g_x = g_c + x * d
            n = float(g_x.norm())
            slope = float(d @ g0) + k * float(g_x @ d) / n
            curvature = k * (float(d @ d) * n * n - float(g_x @ d) ** 2) / n**3
            if curvature <= 0 or not 0.0 < x < 1.0:
                break
            x = min(max(x - slope / curvature, 0.0), 1.0)
        g_x = g_c + x * d
        return 2 * (g0 + k / g_x.norm() * g_x) / (1 + C * C)


def mgda_step(model, features, fine, coarse, state):
    """The official MGDA code (``train_multi_task.py``): the min-norm weights of the shared
    gradients (here from TorchJD's Frank-Wolfe solver, not the closed form), then
    ``sum_t scale[t] * loss_t`` backpropagated: the heads are weighted too. Times 2, the file's
    documented normalisation."""
    shared = list(model.backbone.parameters())
    j = torch.stack([_flat(torch.autograd.grad(loss, shared, retain_graph=True)) for loss in (fine, coarse)])
    scale = 2 * MGDAWeighting(epsilon=1e-12, max_iters=1000)(j @ j.T)
    (scale[0] * fine + scale[1] * coarse).backward()


def nash_mtl_step(model, features, fine, coarse, state):
    """The official ``NashMTL.backward``: alpha solves ``G a = 1 / a`` over the shared parameters,
    ``sum_k alpha_k L_k`` is backpropagated (heads weighted by alpha), then the shared gradient is
    clipped to norm 1."""
    shared = list(model.backbone.parameters())
    j = torch.stack([_flat(torch.autograd.grad(loss, shared, retain_graph=True)) for loss in (fine, coarse)])
    G = (j @ j.T).numpy()
    scale = np.sqrt(np.trace(G))
    sol = optimize.root(lambda a: G @ a - 1 / a, np.ones(2) / scale, method="hybr", tol=1e-14)
    assert (sol.x > 0).all() and np.abs(sol.x * (G @ sol.x) - 1).max() < 1e-12, sol
    alpha = torch.tensor(sol.x, dtype=F64)
    (alpha[0] * fine + alpha[1] * coarse).backward()
    torch.nn.utils.clip_grad_norm_(shared, 1.0)


def db_mtl_step(model, features, fine, coarse, state):
    """LibMTL's ``DB_MTL.backward`` with beta = 0: per-task backward of ``log(L + 1e-8)`` (heads keep
    it, unscaled), shared gradients balanced to the largest norm."""
    shared = list(model.backbone.parameters())
    grads = []
    for k, loss in enumerate((fine, coarse)):
        torch.log(loss + 1e-8).backward(retain_graph=k == 0)
        grads.append(_flat([p.grad for p in shared]))
        for p in shared:
            p.grad = None
    grads = torch.stack(grads)
    u = grads.norm(dim=-1)
    alpha = u.max() / (u + 1e-8)
    _set_shared_grad(shared, (alpha[:, None] * grads).sum(0))


def gradnorm_step(model, features, fine, coarse, state):
    """GradNorm with LibMTL's formulation: epoch 0 trains on the sum and records the initial losses;
    then ``w = 2 softmax(s)``, ``L_grad = sum_k |w_k |g_k| - mean(w |g|) r_k^1.5|`` steps ``s``
    and the model is trained on ``sum_k w_k L_k`` (w detached; heads weighted, as in the paper)."""
    s = state["s"]
    if state["epoch"] == 0:
        state["sums"] += torch.stack([fine.detach(), coarse.detach()])
        state["count"] += 1
        (fine + coarse).backward()
        return
    shared = list(model.backbone.parameters())
    w = 2 * torch.softmax(s, dim=0)
    g_norms = torch.stack(
        [_flat(torch.autograd.grad(loss, shared, retain_graph=True)).norm() for loss in (fine, coarse)]
    )
    norms = w * g_norms
    ratio = torch.stack([fine.detach(), coarse.detach()]) / (state["sums"] / state["count"])
    target = (norms.mean() * (ratio / ratio.mean()) ** 1.5).detach()
    (s.grad,) = torch.autograd.grad((norms - target).abs().sum(), [s])
    w = w.detach()
    (w[0] * fine + w[1] * coarse).backward()


C = 0.4
REFERENCES = {
    "pcgrad": (lambda: torchjd_step(PCGrad()), EXACT),
    "upgrad": (
        lambda: torchjd_step(
            UPGrad(pref_vector=torch.ones(2, dtype=F64), projector=QuadprogProjector(norm_eps=1e-12, reg_eps=1e-12))
        ),
        dict(rtol=1e-7, atol=1e-10),
    ),  # the 1e-12 ridge itself moves weights by ~1e-11 relative
    "mgda": (lambda: mgda_step, EXACT),
    "imtl_g": (lambda: torchjd_step(IMTLG(), factor=2.0), EXACT),
    "cagrad": (lambda: torchjd_step(ExactCAGrad()), EXACT),
    "aligned_mtl": (lambda: torchjd_step(AlignedMTL(pref_vector=torch.ones(2, dtype=F64), scale_mode="min")), EXACT),
    "nash_mtl": (lambda: nash_mtl_step, EXACT),
    "db_mtl": (lambda: db_mtl_step, EXACT),
    "gradnorm": (lambda: gradnorm_step, EXACT),
}


def train_reference(step, profile, train, seed):
    """The task card's loop, in float64, with ``step`` setting every parameter's gradient."""
    torch.manual_seed(seed)
    model = build_model("resnet20").to(dtype=F64, memory_format=torch.channels_last)
    opt = profile.optimizer
    state = {"s": torch.nn.Parameter(torch.zeros(2, dtype=F64)), "sums": torch.zeros(2, dtype=F64), "count": 0}
    params = list(model.parameters()) + ([state["s"]] if step is gradnorm_step else [])
    optimizer = torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    loader = TrainLoader(
        train, batch_size=profile.batch_size, seed=seed, device=torch.device("cpu"), channels_last=True, dtype=F64
    )
    model.train()
    for epoch in range(profile.epochs):
        state["epoch"] = epoch
        for group in optimizer.param_groups:
            group["lr"] = opt.lr_at(epoch, profile.epochs)
        for x, y_fine, y_coarse in loader.epoch(epoch):
            features = model.backbone(x)
            fine = F.cross_entropy(model.fine_head(features), y_fine)
            coarse = F.cross_entropy(model.coarse_head(features), y_coarse)
            optimizer.zero_grad()
            step(model, features, fine, coarse, state)
            optimizer.step()
    return model


def _load(name):
    spec = importlib.util.spec_from_file_location(f"ref_{name}", BASELINES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_gradient_level_baseline_has_a_reference():
    """Here, or (pcgrad_mlsbench: the published fill) in ``test_published_reproductions.py``."""
    asks_gramian = sorted(p.stem for p in BASELINES.glob("*.py") if "gramian" in p.read_text())
    assert asks_gramian == sorted([*REFERENCES, "pcgrad_mlsbench"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_baseline_trains_every_parameter_as_its_reference(name, small_splits, tmp_path):
    train, test = small_splits
    train = train.head(32)  # two steps per epoch, four in all: momentum, state and the epoch boundary included
    profile = exact_profile(epochs=2)
    spec = run_spec(profile, submission=f"{name}.py").model_copy(update={"precision": "fp64"})
    outcome = run_one(
        spec,
        submission=BASELINES / f"{name}.py",
        train=train,
        test=test,
        run_dir=tmp_path / "run",
        sandbox=get_sandbox("none"),
    )
    assert outcome.result.status == "ok", outcome.result.reason
    make_step, tol = REFERENCES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cvxpy: "problem is not DPP"
        reference = train_reference(make_step(), profile, train, seed=42)
    got, want = outcome.model.state_dict(), reference.state_dict()
    torch.manual_seed(42)
    initial = build_model("resnet20").to(F64).state_dict()
    for key in want:
        torch.testing.assert_close(got[key], want[key], **tol, msg=key)
    for key in ("backbone.body.0.weight", "fine_head.weight", "coarse_head.weight"):
        assert (want[key] - initial[key]).abs().max() > 1e-4, key  # the reference really trained it
