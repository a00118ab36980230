"""Baselines: each file checked like a submission, and its weights checked against an
independent computation (hand-computed values, explicit projections, brute force)."""

import importlib.util
import math
import shutil
import subprocess

import pandas as pd
import pytest
import torch

from conftest import REPO, harness_env

BASELINES = REPO / "baselines"
NAMES = sorted(p.stem for p in BASELINES.glob("*.py"))


def load(name):
    spec = importlib.util.spec_from_file_location(f"baseline_{name}", BASELINES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MultiTaskLoss()


def call(loss, fine, coarse, epoch=0, total=10, **kwargs):
    """``(L, dL/dfine, dL/dcoarse)`` for loss values ``fine`` and ``coarse``."""
    f = torch.tensor(float(fine), requires_grad=True)
    c = torch.tensor(float(coarse), requires_grad=True)
    out = loss(f, c, epoch, total, **kwargs)
    d_f, d_c = torch.autograd.grad(out, [f, c], allow_unused=True)
    return float(out.detach()), 0.0 if d_f is None else float(d_f), 0.0 if d_c is None else float(d_c)


def gram(g_f, g_c):
    return torch.tensor([[g_f @ g_f, g_f @ g_c], [g_c @ g_f, g_c @ g_c]], dtype=torch.float32)


def test_the_expected_files_exist():
    assert {"equal_weighting", "uncertainty", "dwa", "dwa_batch", "pcgrad", "fine_only", "coarse_anneal",
            "mgda", "rlw", "gls"} <= set(NAMES)


def test_fixed_weightings():
    assert call(load("equal_weighting"), 4.0, 2.0) == (6.0, 1.0, 1.0)
    assert call(load("fine_only"), 4.0, 2.0) == (4.0, 1.0, 0.0)
    anneal = load("coarse_anneal")
    assert call(anneal, 4.0, 2.0, epoch=0, total=200)[2] == pytest.approx(1.0)
    assert call(anneal, 4.0, 2.0, epoch=100, total=200)[2] == pytest.approx(0.5)
    assert call(anneal, 4.0, 2.0, epoch=150, total=200)[2] == pytest.approx(0.5 * (1 - math.sqrt(0.5)))


def test_uncertainty_matches_kendall():
    loss = load("uncertainty")
    assert call(loss, 4.0, 2.0) == (6.0, 1.0, 1.0)
    with torch.no_grad():
        loss.log_vars.copy_(torch.tensor([0.5, -0.2]))
    value, d_f, d_c = call(loss, 4.0, 2.0)
    assert value == pytest.approx(math.exp(-0.5) * 4 + 0.5 + math.exp(0.2) * 2 - 0.2, rel=1e-6)
    assert (d_f, d_c) == (pytest.approx(math.exp(-0.5)), pytest.approx(math.exp(0.2)))


def test_gls_is_the_geometric_mean():
    value, d_f, d_c = call(load("gls"), 4.0, 1.0)
    assert (value, d_f, d_c) == (pytest.approx(2.0), pytest.approx(0.25), pytest.approx(1.0))


def test_dwa_uses_epoch_averaged_loss_ratios():
    loss = load("dwa")
    epochs = {0: [(4.0, 2.0), (3.8, 2.2)], 1: [(3.0, 1.5), (3.0, 1.3)], 2: [(2.5, 1.0)]}
    weights = {}
    for epoch, batches in epochs.items():
        for fine, coarse in batches:
            weights[epoch] = call(loss, fine, coarse, epoch=epoch)[1:]
    assert weights[0] == weights[1] == (1.0, 1.0)
    r_f, r_c = (3.0 / 3.9), (1.4 / 2.1)  # epoch-1 average over epoch-0 average
    e_f, e_c = math.exp(r_f / 2), math.exp(r_c / 2)
    assert weights[2] == (pytest.approx(2 * e_f / (e_f + e_c)), pytest.approx(2 * e_c / (e_f + e_c)))


def test_dwa_batch_uses_consecutive_batch_ratios():
    loss = load("dwa_batch")
    assert call(loss, 4.0, 2.0, epoch=0)[1:] == (1.0, 1.0)
    assert call(loss, 3.0, 2.5, epoch=0)[1:] == (1.0, 1.0)  # uniform throughout epoch 0
    d = call(loss, 2.0, 2.0, epoch=1)[1:]
    e_f, e_c = math.exp((3.0 / 4.0) / 2), math.exp((2.5 / 2.0) / 2)
    assert d == (pytest.approx(2 * e_f / (e_f + e_c)), pytest.approx(2 * e_c / (e_f + e_c)))


def test_rlw_weights_are_random_positive_seeded_and_sum_to_two():
    torch.manual_seed(3)
    first = [call(load("rlw"), 4.0, 2.0)[1:] for _ in range(20)]
    torch.manual_seed(3)
    again = [call(load("rlw"), 4.0, 2.0)[1:] for _ in range(20)]
    assert first == again and len(set(first)) == 20
    assert all(w_f > 0 and w_c > 0 and w_f + w_c == pytest.approx(2.0, rel=1e-6) for w_f, w_c in first)


def _random_pairs(n=200, dim=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        g_f = torch.randn(dim, generator=g)
        g_c = torch.randn(dim, generator=g)
        if i % 2:  # make half of them conflict strongly
            g_c = g_c - 1.5 * g_f * (g_f @ g_c).sign().clamp(min=0) - 0.5 * g_f
        yield g_f, g_c


def test_pcgrad_equals_explicit_projection():
    loss = load("pcgrad")
    conflicting = 0
    for g_f, g_c in _random_pairs():
        _, w_f, w_c = call(loss, 1.0, 1.0, gramian=gram(g_f, g_c))
        if g_f @ g_c < 0:
            conflicting += 1
            p_f = g_f - (g_f @ g_c) / (g_c @ g_c) * g_c
            p_c = g_c - (g_c @ g_f) / (g_f @ g_f) * g_f
            expected = p_f + p_c
        else:
            expected = g_f + g_c
        torch.testing.assert_close(w_f * g_f + w_c * g_c, expected, rtol=1e-4, atol=1e-4)
    assert 50 < conflicting < 200


def test_mgda_is_the_min_norm_point_of_the_hull():
    loss = load("mgda")
    alphas = torch.linspace(0, 1, 20001)
    for g_f, g_c in _random_pairs(n=100, seed=1):
        _, w_f, w_c = call(loss, 1.0, 1.0, gramian=gram(g_f, g_c))
        assert w_f + w_c == pytest.approx(2.0, rel=1e-5) and w_f >= 0 and w_c >= 0
        hull = alphas[:, None] * g_f + (1 - alphas[:, None]) * g_c
        best = hull[hull.norm(dim=1).argmin()]
        torch.testing.assert_close((w_f * g_f + w_c * g_c) / 2, best, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("name", NAMES)
def test_every_baseline_passes_harness_check(name, tmp_path):
    r = subprocess.run([shutil.which("harness"), "check", str(BASELINES / f"{name}.py")], capture_output=True,
                       text=True, env=harness_env(), cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{name}.py: ok" in r.stdout


def test_harness_baselines_marks_rows_as_baselines(tmp_path):
    r = subprocess.run([shutil.which("harness"), "baselines", "--only", "equal_weighting", "--only", "pcgrad",
                        "--profile", "tiny"], capture_output=True, text=True, env=harness_env(), cwd=tmp_path,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    df = pd.read_csv(tmp_path / "leaderboard-tiny.csv")
    assert df["submission"].tolist() == ["equal_weighting.py", "pcgrad.py"]
    assert (df["kind"] == "baseline").all() and (df["status"] == "ok").all()
    r = subprocess.run([shutil.which("harness"), "baselines", "--only", "nope", "--profile", "tiny"],
                       capture_output=True, text=True, env=harness_env(), cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and "unknown baseline(s) nope" in r.stderr
