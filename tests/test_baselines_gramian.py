"""Gramian-level baselines against independent computations from the raw gradients: explicit
projections, brute-force searches over the simplex, an SVD, and TorchJD (a maintained
implementation of these aggregators, installed with the dev extras) for the methods it has.

Each baseline sees only the 2x2 Gramian; the references see the gradient vectors themselves.
Gradients are random (half of them made to conflict), with norms spread over four decades."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import call, gram, load, random_pairs
from torchjd.aggregation import AlignedMTLWeighting, CAGradWeighting, IMTLGWeighting, NashMTL, UPGradWeighting
from torchjd.linalg import QuadprogProjector

F64 = torch.float64
GRAMIAN_BASELINES = ["pcgrad", "mgda", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl", "upgrad", "db_mtl"]


def weights(loss, g_f, g_c, fine=1.0, coarse=1.0):
    _, w_f, w_c = call(loss, fine, coarse, gramian=gram(g_f, g_c, F64))
    return torch.tensor([w_f, w_c], dtype=F64)


def update(w, g_f, g_c):
    return w[0] * g_f + w[1] * g_c


def assert_near(actual, expected, rel):
    """``|actual - expected| <= rel * |expected|`` (plus a floor far below any gradient here)."""
    err, scale = float((actual - expected).norm()), float(expected.norm())
    assert err <= rel * scale + 1e-12, f"relative error {err / max(scale, 1e-300):.2e} > {rel:.0e}"


def pairs(n=100, seed=0):
    return list(random_pairs(n=n, seed=seed, dtype=F64))


def test_random_pairs_cover_conflicting_and_aligned_gradients():
    signs = [float(g_f @ g_c) < 0 for g_f, g_c in pairs()]
    assert 30 < sum(signs) < 90


def test_pcgrad_equals_explicit_projection():
    loss = load("pcgrad")
    for g_f, g_c in pairs(seed=1):
        if g_f @ g_c < 0:
            expected = (g_f - (g_f @ g_c) / (g_c @ g_c) * g_c) + (g_c - (g_c @ g_f) / (g_f @ g_f) * g_f)
        else:
            expected = g_f + g_c
        assert_near(update(weights(loss, g_f, g_c), g_f, g_c), expected, 1e-6)


@pytest.mark.slow  # over ~3 s
def test_mgda_is_the_min_norm_point_of_the_hull():
    loss = load("mgda")
    alphas = torch.linspace(0, 1, 100_001, dtype=F64)[:, None]
    for g_f, g_c in pairs(seed=2):
        w = weights(loss, g_f, g_c)
        assert float(w.sum()) == pytest.approx(2.0) and bool((w >= 0).all())
        hull = alphas * g_f + (1 - alphas) * g_c
        best = hull[hull.norm(dim=1).argmin()]
        assert float(update(w, g_f, g_c).norm() / 2) <= float(best.norm()) * (1 + 1e-7)
        assert_near(update(w, g_f, g_c) / 2, best, 1e-3)


@pytest.mark.slow
def test_cagrad_matches_brute_force_and_torchjd():
    loss, c = load("cagrad"), 0.4
    xs = torch.linspace(0, 1, 100_001, dtype=F64)[:, None]
    for g_f, g_c in pairs(seed=3):
        w = weights(loss, g_f, g_c)
        g0 = (g_f + g_c) / 2
        g_x = xs * g_f + (1 - xs) * g_c
        best = g_x[(g_x @ g0 + c * g0.norm() * g_x.norm(dim=1)).argmin()]
        direction = g0 + c * g0.norm() / best.norm() * best  # Algorithm 1 of the paper
        assert_near(update(w, g_f, g_c), 2 * direction / (1 + c * c), 1e-3)
        # TorchJD: on the average's scale, no rescale; and it treats a Gramian of trace < 1e-4 as
        # zero, so it is given the unit-trace Gramian (CAGrad's weights are scale-invariant)
        G = gram(g_f, g_c, F64)
        reference = CAGradWeighting(c=c)(G / G.trace())
        assert_near(w, 2 * reference / (1 + c * c), 1e-3)


def test_imtl_g_gives_equal_projections_and_matches_torchjd():
    loss = load("imtl_g")
    for g_f, g_c in pairs(seed=4):
        w = weights(loss, g_f, g_c)
        g = update(w, g_f, g_c)
        assert float(w.sum()) == pytest.approx(2.0)
        assert float(g @ g_f / g_f.norm()) == pytest.approx(float(g @ g_c / g_c.norm()), rel=1e-6)
        assert_near(w, 2 * IMTLGWeighting()(gram(g_f, g_c, F64)), 1e-6)


@pytest.mark.slow
def test_nash_mtl_solves_the_bargaining_condition_and_matches_torchjd_where_it_converges():
    loss = load("nash_mtl")
    agreed = 0
    for g_f, g_c in pairs(seed=5):
        w = weights(loss, g_f, g_c)
        G = gram(g_f, g_c, F64)
        # the bargaining condition a (.) G a = 1 holds up to the max-norm scale, which is always
        # active: at the solution |update|^2 = a^T G a = K = 2 > 1
        products = w * (G @ w)
        assert bool((products > 0).all())
        assert float(products[0]) == pytest.approx(float(products[1]), rel=1e-5)
        assert float(update(w, g_f, g_c).norm()) == pytest.approx(1.0, rel=1e-6)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cvxpy: "problem is not DPP"
            reference = NashMTL(n_tasks=2)(torch.stack([g_f, g_c]))  # the aggregated update itself
        ref_w = torch.linalg.lstsq(torch.stack([g_f, g_c]).T, reference[:, None]).solution.flatten()
        ref_products = ref_w * (G @ ref_w)
        if bool((ref_products > 0).all()) and float(ref_products.min() / ref_products.max()) > 0.99:
            agreed += 1  # TorchJD's iterative solver converged: the updates must agree
            assert_near(update(w, g_f, g_c), reference, 1e-2)
        # else its iterative solver (started at (1, 1), ECOS, stopping at 1e-3) ended at a point that
        # violates the condition: there is nothing to compare against
    assert agreed >= 60


def test_aligned_mtl_matches_svd_of_the_gradients_and_torchjd():
    loss = load("aligned_mtl")
    for g_f, g_c in pairs(seed=6):
        w = weights(loss, g_f, g_c)
        u, s, vt = torch.linalg.svd(torch.stack([g_f, g_c]), full_matrices=False)
        aligned = s.min() * (u @ vt)  # rows orthogonal, each of norm sigma_min
        assert_near(update(w, g_f, g_c), aligned.sum(0), 1e-6)
        assert_near(w, 2 * AlignedMTLWeighting()(gram(g_f, g_c, F64)), 1e-6)


def _project_onto_dual_cone(g, others):
    """Nearest point to g among the candidates that satisfy <x, h> >= 0 for all task gradients h."""
    candidates = [g] + [g - (g @ h) / (h @ h) * h for h in others] + [torch.zeros_like(g)]
    feasible = [x for x in candidates if all(float(x @ h) >= -1e-9 * float(x.norm() * h.norm()) for h in others)]
    return min(feasible, key=lambda x: float((x - g).norm()))


def test_upgrad_sums_the_dual_cone_projections_and_matches_torchjd():
    loss = load("upgrad")
    for g_f, g_c in pairs(seed=7):
        w = weights(loss, g_f, g_c)
        expected = _project_onto_dual_cone(g_f, [g_f, g_c]) + _project_onto_dual_cone(g_c, [g_f, g_c])
        assert_near(update(w, g_f, g_c), expected, 1e-6)
        # TorchJD averages (1/K); its default 1e-4 ridge on the normalised Gramian is cut to 1e-10,
        # and it is given the unit-trace Gramian (it treats trace < 1e-4 as zero; UPGrad is
        # scale-invariant)
        G = gram(g_f, g_c, F64)
        reference = UPGradWeighting(projector=QuadprogProjector(reg_eps=1e-10))(G / G.trace())
        assert_near(w, 2 * reference, 1e-6)


def test_db_mtl_balances_log_loss_gradients_to_the_largest_norm():
    loss = load("db_mtl")
    gen = torch.Generator().manual_seed(8)
    for g_f, g_c in pairs(seed=8):
        fine, coarse = (float(x) for x in 0.05 + 5 * torch.rand(2, generator=gen, dtype=F64))
        w = weights(loss, g_f, g_c, fine, coarse)
        h = [g_f / (fine + 1e-8), g_c / (coarse + 1e-8)]  # gradients of log(L + 1e-8)
        top = max(float(x.norm()) for x in h)
        expected = sum(top / (x.norm() + 1e-8) * x for x in h)  # LibMTL's alpha
        assert_near(update(w, g_f, g_c), expected, 1e-6)


@pytest.mark.parametrize("name", GRAMIAN_BASELINES)
def test_degenerate_gramians_give_finite_weights(name):
    g = torch.tensor([3.0, -4.0, 0.0], dtype=F64)
    zero = torch.zeros(3, dtype=F64)
    for g_f, g_c in [(zero, zero), (g, zero), (zero, g), (g, g), (g, 2 * g), (g, -g), (g, -0.5 * g)]:
        w = weights(load(name), g_f, g_c)
        assert bool(torch.isfinite(w).all()), (name, g_f, g_c, w)
