"""The loss worker's SGD (``worker.sgd_step``) against ``torch.optim.SGD`` itself: the same bits after many
steps with every option, and a worker that trains a module with parameters never loads torch's compiler
stack (which ``torch.optim`` loads on first use, 1.3 s of every worker start)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from harness.isolation.worker import sgd_step


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "momentum, weight_decay, nesterov", [(0.0, 0.0, False), (0.9, 0.0, False), (0.9, 5e-4, False), (0.9, 5e-4, True)]
)
def test_sgd_step_is_torch_sgd_bit_for_bit(momentum, weight_decay, nesterov, dtype):
    g = torch.Generator().manual_seed(0)
    shapes = [(2,), (3, 4), ()]
    ours = [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in shapes]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    reference = torch.optim.SGD(theirs, lr=0.1, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    buffers: dict = {}
    for step in range(40):
        lr = 0.1 * (1 + step % 7) / 7  # a schedule: the rate changes every step
        for i, (a, b) in enumerate(zip(ours, theirs)):
            # the last parameter gets no gradient on every third step (a loss that leaves it out): skipped
            grad = None if i == 2 and step % 3 == 0 else torch.randn(a.shape, generator=g, dtype=dtype) * 10
            a.grad, b.grad = grad, None if grad is None else grad.clone()
        with torch.no_grad():
            sgd_step(ours, buffers, lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        for group in reference.param_groups:
            group["lr"] = lr
        reference.step()
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b), (step, a, b)
    assert (len(buffers) == len(shapes)) == (momentum != 0)


@pytest.mark.slow
def test_a_worker_training_a_module_with_parameters_never_loads_the_compiler_stack(tmp_path):
    """A fresh interpreter runs a worker session of the uncertainty weighting (two parameters) for two steps."""
    script = textwrap.dedent(
        """
        import sys
        from harness.isolation import wire
        from harness.isolation.worker import LossSession
        from harness.protocol import OptimizerSettings

        init = {"seed": 0, "max_params": 10**6, "optimizer": OptimizerSettings().model_dump()}
        session = LossSession(sys.argv[1], init)
        for step in range(2):
            session.step(wire.StepRecord(0, 2, step, 5, 0.1, 4.0, 2.0, *[0.0] * 9, 0))
        moved = session.state()["log_vars"]
        assert moved != [0.0, 0.0], moved
        print(sorted(m for m in sys.modules if m.startswith(("torch._dynamo", "torch._inductor"))))
        """
    )
    from helpers import BASELINES

    r = subprocess.run(
        [sys.executable, "-c", script, str(BASELINES / "uncertainty.py")], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
