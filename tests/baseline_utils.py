"""Helpers for the baseline tests: load a baseline file directly (outside the sandbox) and read
the weights it gives each task loss."""

from __future__ import annotations

import importlib.util

import torch

from conftest import BASELINES


def load(name: str):
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


def gram(g_f, g_c, dtype=torch.float32):
    j = torch.stack([g_f, g_c])
    return (j @ j.T).to(dtype)


def random_pairs(n=200, dim=50, seed=0, dtype=torch.float32):
    """Random gradient pairs: every other pair made to conflict strongly; norms vary over 4 decades."""
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        g_f = torch.randn(dim, generator=g, dtype=dtype)
        g_c = torch.randn(dim, generator=g, dtype=dtype)
        if i % 2:
            g_c = g_c - 1.5 * g_f * (g_f @ g_c).sign().clamp(min=0) - 0.5 * g_f
        scale = 10 ** (4 * torch.rand((), generator=g, dtype=dtype) - 3)
        yield g_f * scale, g_c * (10 ** (torch.rand((), generator=g, dtype=dtype) - 0.5)) * scale
