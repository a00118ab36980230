"""The gradient hint: what a rejection adds when a file reaches for what a loss module never gets (the
model, its optimizer, its gradients, the autograd graph), and how a gradient-based method is written
for the harness instead. Read from the syntax tree, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

GRADIENT_ACCESS = frozenset(
    {
        "param_groups",
        "grad",
        "grad_fn",
        "next_functions",
        "zero_grad",
        "register_hook",
        "optimizer",
        "model",
        "named_parameters",
    }
)
GRAMIAN_HINT = """\
the loss module never sees the model, its optimizer, its gradients or the autograd graph. A
gradient-based method declares a keyword-only `gramian`: the trainer passes G[i][j] = <g_i, g_j>,
the inner products of the two tasks' gradients over the shared parameters, and the method returns
its weighting of the losses:

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):
        g_ff, g_fc, g_cc = gramian[0, 0], gramian[0, 1], gramian[1, 1]
        w_fine, w_coarse = ...  # your method's weights, computed from G
        return w_fine * fine_loss + w_coarse * coarse_loss

    def head_loss(self, fine_loss, coarse_loss):  # optional: what each task's own head trains on
        return fine_loss + coarse_loss

For two tasks this is exact for every method whose update of the shared parameters is
w_fine * g_fine + w_coarse * g_coarse with weights computed from G (and from numbers the module keeps,
such as an EMA of the cosine): PCGrad, MGDA, CAGrad, IMTL-G, Nash-MTL, Aligned-MTL, UPGrad, GradNorm,
DB-MTL, whole-model GradVac; `head_sq_norms` adds each task's squared gradient norm over its own head.
It cannot express a method that treats coordinates (GradDrop) or layers (GradVac's layer-wise variants)
differently, or that keeps per-coordinate or gradient-vector state (MoCo, SDMGrad, ExcessMTL's AdaGrad
accumulator): a port of one of those would not be the method.
(submissions/README.md, "Optional inputs" and "What the Gramian can express")"""


def reaches_for_gradients(tree: ast.Module) -> bool:
    """Whether the file reaches for what a loss module never gets: an optimizer, a model, gradients,
    parameter groups or the autograd graph (by attribute, parameter or variable name)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in GRADIENT_ACCESS:
            return True
        if isinstance(node, ast.arg) and node.arg in ("optimizer", "model"):
            return True
    return False


def file_reaches_for_gradients(path: Path) -> bool:
    """:func:`reaches_for_gradients` of the file at ``path``; False when it cannot be read or parsed."""
    try:
        return reaches_for_gradients(ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, UnicodeDecodeError, RecursionError):
        return False
