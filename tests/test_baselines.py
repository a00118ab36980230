"""Baselines: each file checked like a submission, and its weights checked against an
independent computation (hand-computed values, explicit projections, brute force)."""

import math
import shutil
import subprocess

import pandas as pd
import pytest
import torch
from helpers import BASELINES, call, harness_env, load, require_sandbox

NAMES = sorted(p.stem for p in BASELINES.glob("*.py"))


def test_the_expected_files_exist():
    assert set(NAMES) == {
        "equal_weighting",
        "uncertainty",
        "dwa",
        "dwa_batch",
        "pcgrad",
        "fine_only",
        "coarse_anneal",
        "rlw",
        "gls",
        "db_mtl",
        "famo",
        "famo_next_batch",
        "pcgrad_mlsbench",
        "amtl",
        "mgda",
        "cagrad",
        "imtl_g",
        "nash_mtl",
        "aligned_mtl",
        "upgrad",
        "gradnorm",
        "static_coarse_0p1",
        "static_coarse_0p3",
        "static_coarse_0p5",
        "static_coarse_2",
        "static_coarse_3",
    }


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


def test_dwa_batch_compares_this_batch_with_the_previous_call():
    loss = load("dwa_batch")
    assert call(loss, 4.0, 2.0, epoch=0)[1:] == (1.0, 1.0)
    assert call(loss, 3.0, 2.5, epoch=0)[1:] == (1.0, 1.0)  # uniform throughout epoch 0
    d = call(loss, 2.0, 2.0, epoch=1)[1:]  # this batch over the last call of epoch 0
    e_f, e_c = math.exp((2.0 / (3.0 + 1e-8)) / 2), math.exp((2.0 / (2.5 + 1e-8)) / 2)
    assert d == (pytest.approx(2 * e_f / (e_f + e_c)), pytest.approx(2 * e_c / (e_f + e_c)))
    d = call(loss, 1.0, 3.0, epoch=1)[1:]
    e_f, e_c = math.exp((1.0 / 2.0) / 2), math.exp((3.0 / 2.0) / 2)
    assert d == (pytest.approx(2 * e_f / (e_f + e_c)), pytest.approx(2 * e_c / (e_f + e_c)))
    fresh = load("dwa_batch")
    assert call(fresh, 4.0, 2.0, epoch=3)[1:] == (1.0, 1.0)  # no previous call yet


def test_pcgrad_mlsbench_weights_from_the_gramian_and_the_fine_head_norm():
    loss = load("pcgrad_mlsbench")
    g = torch.tensor([[4.0, -1.0], [-1.0, 2.0]])
    _, d_f, d_c = call(loss, 3.0, 1.0, gramian=g, head_sq_norms=torch.tensor([1.0, 5.0]))
    assert (d_f, d_c) == (pytest.approx(1 + 1 / 5), pytest.approx(1 + 1 / 2))  # |g0|^2 = 4 + 1; |g1|^2 = 2
    f, c = torch.tensor(3.0, requires_grad=True), torch.tensor(1.0, requires_grad=True)
    head = loss.head_loss(f, c)
    assert torch.autograd.grad(head, [f, c], allow_unused=True) == (pytest.approx(1.2), None)  # no coarse head
    _, d_f, d_c = call(loss, 3.0, 1.0, gramian=g.abs(), head_sq_norms=torch.tensor([1.0, 5.0]))
    assert (d_f, d_c) == (1.0, 1.0)


def test_rlw_weights_are_random_positive_seeded_and_sum_to_two():
    torch.manual_seed(3)
    first = [call(load("rlw"), 4.0, 2.0)[1:] for _ in range(20)]
    torch.manual_seed(3)
    again = [call(load("rlw"), 4.0, 2.0)[1:] for _ in range(20)]
    assert first == again and len(set(first)) == 20
    assert all(w_f > 0 and w_c > 0 and w_f + w_c == pytest.approx(2.0, rel=1e-6) for w_f, w_c in first)


@pytest.mark.parametrize("name", ["famo", "famo_next_batch"])
def test_famo_matches_an_adam_driven_reference(name):
    """An independent FAMO in the style of the official code: softmax logits stepped by
    ``torch.optim.Adam`` with the softmax Jacobian from autograd. ``famo`` gets the batch's losses
    after the step (here made up) at the next call; ``famo_next_batch`` takes the next batch's."""
    loss = load(name)
    xi = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([xi], lr=0.025, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    prev, seen = None, set()
    for step in range(40):
        losses = torch.tensor([4.6, 3.0], dtype=torch.float64) * torch.exp(
            -step / 20 * torch.rand(2, generator=gen, dtype=torch.float64)
        )
        after = None if prev is None else prev * (0.9 + 0.2 * torch.rand(2, generator=gen, dtype=torch.float64))
        if prev is not None:
            delta = (prev + 1e-8).log() - ((after if name == "famo" else losses) + 1e-8).log()
            adam.zero_grad()
            xi.grad = torch.autograd.grad(torch.softmax(xi, -1), xi, grad_outputs=delta)[0]
            adam.step()
        prev = losses
        z = torch.softmax(xi.detach(), -1)
        d = losses + 1e-8
        expected = 2 * z / ((z / d).sum() * d)  # K * d/dL_k of sum_k z_k log L_k / c
        inputs = {"previous_losses_after_update": after} if name == "famo" else {}
        _, d_f, d_c = call(loss, float(losses[0]), float(losses[1]), epoch=step // 10, **inputs)
        assert (d_f, d_c) == (pytest.approx(float(expected[0]), rel=1e-5), pytest.approx(float(expected[1]), rel=1e-5))
        seen.add(round(float(z[0]), 3))
    assert len(seen) > 10  # the logits did move


def test_amtl_weights_follow_epoch_achievements():
    loss = load("amtl")
    schedule = {0: [(0.2, 0.5), (0.4, 0.7)], 1: [(0.5, 0.8), (0.5, 0.8)], 2: [(0.9, 0.9)]}
    fine, coarse = 3.0, 1.5

    def softmax(a, b):
        return math.exp(a) / (math.exp(a) + math.exp(b)), math.exp(b) / (math.exp(a) + math.exp(b))

    kpi_1 = (0.3, 0.6)  # epoch-0 mean accuracies, the first measurement
    kpi_2 = (0.1 * 0.5 + 0.9 * 0.3, 0.1 * 0.8 + 0.9 * 0.6)  # EMA with momentum 0.1
    expected = {
        0: (0.5, 0.5),
        1: softmax((1 - kpi_1[0]) ** 2, (1 - kpi_1[1]) ** 2),
        2: softmax((1 - kpi_2[0]) ** 2, (1 - kpi_2[1]) ** 2),
    }
    for epoch, batches in schedule.items():
        for acc_f, acc_c in batches:
            value, d_f, d_c = call(loss, fine, coarse, epoch=epoch, batch_fine_acc=acc_f, batch_coarse_acc=acc_c)
            w_f, w_c = expected[epoch]
            assert value == pytest.approx(fine**w_f * coarse**w_c, rel=1e-6)
            assert (d_f, d_c) == (
                pytest.approx(w_f * value / fine, rel=1e-5),
                pytest.approx(w_c * value / coarse, rel=1e-5),
            )
    assert expected[1][0] > expected[1][1]  # the task with the lower achievement gets more weight


def test_gradnorm_weights_and_their_gradient():
    loss = load("gradnorm")
    gramian = torch.tensor([[4.0, -0.7], [-0.7, 1.0]])  # |g_f| = 2, |g_c| = 1
    for fine, coarse in [(4.0, 2.0), (2.0, 1.0)]:  # epoch 0: equal weights, L(0) = (3, 1.5)
        assert call(loss, fine, coarse, epoch=0, gramian=gramian)[1:] == (1.0, 1.0)
    f, c = torch.tensor(1.5, requires_grad=True), torch.tensor(1.2, requires_grad=True)
    out = loss(f, c, 1, 10, gramian=gramian)
    out.backward()
    assert (float(f.grad), float(c.grad)) == (1.0, 1.0)  # w = 2 softmax(0) = (1, 1)
    # by hand: weighted norms (2, 1), mean 1.5; L/L(0) = (0.5, 0.8), r = L/L(0) / 0.65;
    # targets 1.5 r^1.5 ~ (1.01, 2.05): dL_grad/dw = (+2, -1); dw/ds = [[.5, -.5], [-.5, .5]]
    r = (0.5 / 0.65, 0.8 / 0.65)
    assert 2 - 1.5 * r[0] ** 1.5 > 0 and 1 - 1.5 * r[1] ** 1.5 < 0
    torch.testing.assert_close(loss.s.grad, torch.tensor([1.5, -1.5]))
    with torch.no_grad():
        loss.s.copy_(torch.tensor([0.3, -0.1]))
    _, d_f, d_c = call(loss, 1.5, 1.2, epoch=2, gramian=gramian)
    z = math.exp(0.3) / (math.exp(0.3) + math.exp(-0.1))
    assert (d_f, d_c) == (pytest.approx(2 * z, rel=1e-6), pytest.approx(2 * (1 - z), rel=1e-6))


@pytest.mark.slow
def test_every_baseline_passes_harness_check(tmp_path):
    # bubblewrap: a sandbox that starts in a fraction of Docker's time (19 files; both are tested elsewhere)
    require_sandbox("bwrap")
    r = subprocess.run(
        [shutil.which("harness"), "check", "--sandbox", "bwrap", *(str(BASELINES / f"{name}.py") for name in NAMES)],
        capture_output=True,
        text=True,
        env=harness_env(),
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for name in NAMES:
        assert f"{name}.py: ok" in r.stdout, name


@pytest.mark.slow
def test_harness_baselines_marks_rows_as_baselines(tmp_path):
    """A short smoke evaluation of baselines that exercise each optional input: none, the Gramian
    (pcgrad), the Gramian with learnable parameters (gradnorm), batch accuracies (amtl) and
    state across steps (famo)."""
    chosen = ["equal_weighting", "pcgrad", "gradnorm", "amtl", "famo"]
    args = [a for name in chosen for a in ("--only", name)]
    require_sandbox("bwrap")
    r = subprocess.run(
        [shutil.which("harness"), "baselines", *args, "--profile", "tiny", "--sandbox", "bwrap"],
        capture_output=True,
        text=True,
        env=harness_env(),
        cwd=tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (
        "no baselines in" not in r.stdout and "standing in leaderboard-tiny.csv" in r.stdout
    )  # they are the baselines
    df = pd.read_csv(tmp_path / "leaderboard-tiny.csv")
    assert sorted(df["submission"]) == sorted(f"{name}.py" for name in chosen)
    assert (df["kind"] == "baseline").all() and (df["status"] == "ok").all()
    assert (df["best_fine_acc"] > 0).all()
    r = subprocess.run(
        [shutil.which("harness"), "baselines", "--only", "nope", "--profile", "tiny"],
        capture_output=True,
        text=True,
        env=harness_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert r.returncode == 2 and "unknown baseline(s) nope" in r.stderr
