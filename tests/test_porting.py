"""A researcher's own code runs unchanged: numpy, copy and the usual CUDA guard pass the static
check (they reach nothing outside the loss module's world); an unguarded CUDA move and code that
reaches for the optimizer fail with a message that says what to do instead."""

from __future__ import annotations

import pytest
from helpers import SUBMISSIONS, harness

from harness.errors import SubmissionRejected
from harness.isolation.check import static_check

WILD = SUBMISSIONS / "wild"


pytestmark = pytest.mark.slow  # each test starts the harness command


def test_numpy_copy_and_the_cuda_guard_run_unchanged(tmp_path):
    r = harness("check", WILD / "numpy_copy_cuda_guard.py", "--sandbox", "none", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_unguarded_cuda_move_gets_the_cpu_hint(tmp_path):
    r = harness("check", WILD / "cuda_move.py", "--sandbox", "none", cwd=tmp_path)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and "the loss module runs on the CPU" in out and "torch.cuda.is_available()" in out


def test_reaching_for_the_optimizer_shows_how_to_declare_gramian(tmp_path):
    r = harness("check", WILD / "optimizer_grab.py", "--sandbox", "none", cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "declares a keyword-only `gramian`" in out
    assert "def forward(self, fine_loss, coarse_loss, epoch, total_epochs, *, gramian):" in out
    flat = " ".join(out.split())  # and what the Gramian cannot express, so nobody ports one believing it faithful
    assert "PCGrad, MGDA, CAGrad, IMTL-G, Nash-MTL, Aligned-MTL, UPGrad, GradNorm, DB-MTL, whole-model GradVac" in flat
    assert (
        "It cannot express a method that treats coordinates (GradDrop) or layers (GradVac's layer-wise "
        "variants) differently, or that keeps per-coordinate or gradient-vector state (MoCo, SDMGrad, "
        "ExcessMTL's AdaGrad accumulator)"
    ) in flat


@pytest.mark.parametrize(
    "line",
    [
        "np.load('/etc/passwd')",
        "np.fromfile('/etc/passwd')",
        "np.ctypeslib",
        "np.array([1.0]).tofile('/tmp/x')",
        "torch.cuda.set_device(0)",
    ],
)
def test_numpy_and_torch_ways_out_stay_closed(line, tmp_path):
    path = tmp_path / "loss.py"
    path.write_text(
        "import numpy as np\nimport torch\nimport torch.nn as nn\n\n\nclass MultiTaskLoss(nn.Module):\n"
        f"    def forward(self, f, c, e, t):\n        {line}\n        return f + c\n"
    )
    with pytest.raises(SubmissionRejected, match="not allowed"):
        static_check(path)
