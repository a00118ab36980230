"""The per-task gradient path of one training step: each task's gradients, their Gramian over the
shared parameters, and the gradients the parameters receive from the loss worker's reply (see
:mod:`harness.training.trainer` for when each path is taken)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.isolation.client import StepReply

__all__ = [
    "_backward_combined",
    "_backward_per_task",
    "_drop_unreached",
    "_gramian",
    "_head_sq_norms",
    "_reached_gradients",
    "_set_combined_gradients",
    "_task_gradients",
]


Grads = tuple[torch.Tensor | None, ...]


def _task_gradients(
    params: list[torch.nn.Parameter], fine: torch.Tensor, coarse: torch.Tensor, reach: tuple[list[bool], list[bool]]
) -> tuple[Grads, Grads]:
    """Each task loss backpropagated on its own: per parameter, its fine and its coarse gradient;
    None where that loss does not reach the parameter (``reach``, from the eager module: a compiled
    graph may return zeros there), e.g. the other task's head."""
    g_fine = torch.autograd.grad(fine, params, retain_graph=True, allow_unused=True)
    g_coarse = torch.autograd.grad(coarse, params, allow_unused=True)
    return _reached_gradients(g_fine, g_coarse, reach)


def _reached_gradients(g_fine: Grads, g_coarse: Grads, reach: tuple[list[bool], list[bool]]) -> tuple[Grads, Grads]:
    """Autograd's per-task gradients of one model's parameters, kept where the loss reaches the
    parameter (None elsewhere), each its own tensor."""
    # autograd may hand out one tensor for two parameters (e.g. ``p + q`` of equal shapes); the
    # gradients are scaled in place later, so each must be its own tensor
    seen: set[int] = set()
    unique: list[torch.Tensor | None] = []
    for g, reached in zip((*g_fine, *g_coarse), (*reach[0], *reach[1])):
        kept = g if reached else None
        if kept is not None and id(kept) in seen:
            kept = kept.clone()
        if kept is not None:
            seen.add(id(kept))
        unique.append(kept)
    return tuple(unique[: len(g_fine)]), tuple(unique[len(g_fine) :])


def _gramian(g_fine: Grads, g_coarse: Grads, over: list[int]) -> torch.Tensor:
    """``(G00, G01, G11)`` of the task gradients over the parameters ``over`` (indices); a missing
    gradient is 0."""
    keep: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in over:
        f, c = g_fine[i], g_coarse[i]
        if f is not None and c is not None:
            keep.append((f, c))
        elif f is not None:
            keep.append((f, torch.zeros_like(f)))
        elif c is not None:
            keep.append((torch.zeros_like(c), c))
    flat_f = torch.cat([f.reshape(-1) for f, _ in keep])
    flat_c = torch.cat([c.reshape(-1) for _, c in keep])
    return torch.stack([flat_f.dot(flat_f), flat_f.dot(flat_c), flat_c.dot(flat_c)])


def _head_sq_norms(
    g_fine: Grads, g_coarse: Grads, own: tuple[list[int], list[int]], device: torch.device
) -> list[torch.Tensor]:
    """``|g_fine|^2`` over the parameters ``own[0]`` and ``|g_coarse|^2`` over ``own[1]`` (each task's
    own head: the parameters only its loss reaches, outside the Gramian's); 0 over none."""
    out = []
    for grads, pick in ((g_fine, own[0]), (g_coarse, own[1])):
        kept = [g for g in (grads[i] for i in pick) if g is not None]
        out.append(torch.stack([g.square().sum() for g in kept]).sum() if kept else torch.zeros((), device=device))
    return out


def _set_combined_gradients(
    params: list[torch.nn.Parameter],
    g_fine: Sequence[torch.Tensor | None],
    g_coarse: Sequence[torch.Tensor | None],
    w_fine: float,
    w_coarse: float,
    uses_fine: bool,
    uses_coarse: bool,
) -> None:
    """``p.grad <- w_fine * g_fine + w_coarse * g_coarse``, leaving out a loss the combined loss does
    not use (and leaving ``p.grad`` None where no used loss reaches ``p``). Consumes the gradients."""
    both_p, both_f, both_c = [], [], []
    for p, f, c in zip(
        params, g_fine if uses_fine else [None] * len(params), g_coarse if uses_coarse else [None] * len(params)
    ):
        if f is not None and c is not None:
            both_p.append(p)
            both_f.append(f)
            both_c.append(c)
        elif f is not None:
            p.grad = f.mul_(w_fine)
        elif c is not None:
            p.grad = c.mul_(w_coarse)
    if both_p:
        torch._foreach_mul_(both_c, w_coarse)
        torch._foreach_add_(both_c, both_f, alpha=w_fine)
        for p, g in zip(both_p, both_c):
            p.grad = g


def _backward_per_task(
    params: list[torch.nn.Parameter],
    groups: tuple[list[int], list[int]],
    g_fine: Grads,
    g_coarse: Grads,
    reply: StepReply,
) -> None:
    """Gradients from the per-task gradients: the shared parameters (``groups[0]``: both losses reach
    them) get ``dL/dL_k``-weighted ones, the others (``groups[1]``: a task's own head, and backbone
    when independent) the ``dH/dL_k``-weighted ones (H: the head loss, ``L`` itself without one)."""
    for pick, w_fine, w_coarse, uses_fine, uses_coarse in (
        (groups[0], reply.w_fine, reply.w_coarse, reply.uses_fine, reply.uses_coarse),
        (groups[1], reply.h_fine, reply.h_coarse, reply.head_uses_fine, reply.head_uses_coarse),
    ):
        _set_combined_gradients(
            [params[i] for i in pick],
            [g_fine[i] for i in pick],
            [g_coarse[i] for i in pick],
            w_fine,
            w_coarse,
            uses_fine,
            uses_coarse,
        )


def _backward_combined(fine: torch.Tensor, coarse: torch.Tensor, reply: StepReply) -> None:
    """Backpropagate ``w_fine * fine + w_coarse * coarse`` over the losses the combined loss uses: the
    exact gradient of the submission's loss. Python-scalar weights: no host-to-device copy."""
    terms = [
        t * w
        for t, w, used in ((fine, reply.w_fine, reply.uses_fine), (coarse, reply.w_coarse, reply.uses_coarse))
        if used
    ]
    if terms:
        (terms[0] if len(terms) == 1 else terms[0] + terms[1]).backward()


def _drop_unreached(params: list[torch.nn.Parameter], reach: tuple[list[bool], list[bool]], reply: StepReply) -> None:
    """After :func:`_backward_combined` through a compiled graph: a parameter that no loss the
    combined loss uses reaches (``reach``, from the eager module; e.g. the head of a task left out)
    gets no gradient, as eager autograd leaves it (the compiled backward hands it zeros, on which SGD
    would apply weight decay and momentum)."""
    for p, fine, coarse in zip(params, *reach):
        if not ((reply.uses_fine and fine) or (reply.uses_coarse and coarse)):
            p.grad = None
