"""The two SGDs that run without torch.optim, each against ``torch.optim.SGD`` itself: the model's
(``harness.training.sgd.SGD``: the same bits with every option, the same ``state_dict`` both ways) and the
loss worker's (``worker.sgd_step``, a standalone script's copy of the same arithmetic); and a run on the CPU,
trainer and worker, never loads torch's compiler stack (which torch.optim loads on first use: ~2 s of
every process's start)."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import REPO

from harness.isolation.worker import sgd_step
from harness.protocol import OptimizerSettings
from harness.training.sgd import SGD, make_sgd

OPTIONS = [(0.0, 0.0, False), (0.9, 0.0, False), (0.9, 5e-4, False), (0.9, 5e-4, True)]


def _params(dtype, generator):
    """A conv weight in channels_last (as --channels-last trains it), a matrix, a vector, a scalar."""
    shapes = [(4, 3, 3, 3), (3, 4), (2,), ()]
    params = [torch.randn(s, generator=generator, dtype=dtype) for s in shapes]
    params[0] = params[0].contiguous(memory_format=torch.channels_last)
    return [p.requires_grad_() for p in params]


def _clone(params):
    return [p.detach().clone().requires_grad_() for p in params]


def _set_grads(step, generator, *param_lists):
    """Random gradients, the same for every list; the last parameter gets none on every third step (a
    loss that leaves it out), which both must skip."""
    for i, p in enumerate(param_lists[0]):
        grad = None if i == len(param_lists[0]) - 1 and step % 3 == 0 else torch.randn(p.shape, generator=generator)
        for params in param_lists:
            params[i].grad = None if grad is None else grad.to(p.dtype).clone()


def _lr(step):
    return 0.1 * (1 + step % 7) / 7  # a schedule: the rate changes every step


def _the_models(params, options):
    """``(step(lr), how many momentum buffers it holds)`` of the model's SGD over ``params``."""
    sgd = SGD(params, lr=0.1, **options)

    def step(lr):
        sgd.param_groups[0]["lr"] = lr
        sgd.step()
        sgd.zero_grad(set_to_none=True)
        assert all(p.grad is None for p in params)

    return step, lambda: sum("momentum_buffer" in s for s in sgd.state.values())


def _the_loss_workers(params, options):
    """``(step(lr), how many momentum buffers it holds)`` of the loss worker's ``sgd_step`` over ``params``."""
    buffers = {}

    def step(lr):
        with torch.no_grad():
            sgd_step(params, buffers, lr, **options)

    return step, lambda: len(buffers)


@pytest.mark.parametrize("sgd", [_the_models, _the_loss_workers], ids=["the model's", "the loss worker's"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("momentum, weight_decay, nesterov", OPTIONS)
def test_each_sgd_is_torch_sgd_bit_for_bit(sgd, momentum, weight_decay, nesterov, dtype):
    g = torch.Generator().manual_seed(0)
    ours = _params(dtype, g)
    theirs = _clone(ours)
    options = {"momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}
    (step, buffers), reference = sgd(ours, options), torch.optim.SGD(theirs, lr=0.1, **options)
    for i in range(40):
        _set_grads(i, g, ours, theirs)
        step(_lr(i))
        reference.param_groups[0]["lr"] = _lr(i)
        reference.step()
        for x, y in zip(ours, theirs):
            assert torch.equal(x, y), i
    assert ours[0].is_contiguous(memory_format=torch.channels_last)
    assert buffers() == (len(ours) if momentum else 0)


def _saved(optimizer):
    """``optimizer.state_dict()`` through torch.save and torch.load as a checkpoint holds it."""
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("first, then", [(SGD, torch.optim.SGD), (torch.optim.SGD, SGD)], ids=["ours", "torch's"])
def test_a_checkpointed_state_moves_between_the_two(first, then):
    """Five steps with one, its state saved and loaded into the other (as a checkpoint written by
    another build would be), five more: the same bits as ten steps with torch.optim.SGD."""
    g = torch.Generator().manual_seed(2)
    start = _params(torch.float32, g)
    options = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": False}
    straight, resumed = _clone(start), _clone(start)
    reference, a = torch.optim.SGD(straight, **options), first(resumed, **options)
    for step in range(10):
        if step == 5:
            state = _saved(a)
            assert isinstance(state["state"][0]["momentum_buffer"], torch.Tensor)
            a = then(resumed, **{**options, "lr": 1.0, "momentum": 0.0})  # the saved group's settings win
            a.load_state_dict(state)
        _set_grads(step, g, straight, resumed)
        reference.step()
        a.step()
    for x, y in zip(straight, resumed):
        assert torch.equal(x, y)
    assert SGD(_clone(start), **options).state_dict()["param_groups"] == [
        {k: v for k, v in group.items() if k != "params"} | {"params": [0, 1, 2, 3]}
        for group in torch.optim.SGD(_clone(start), **options).state_dict()["param_groups"]
    ]


def test_a_state_of_another_model_is_refused():
    g = torch.Generator().manual_seed(3)
    state = SGD(_params(torch.float32, g), lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False).state_dict()
    with pytest.raises(ValueError, match="of 4 parameters, not 2"):
        SGD(_params(torch.float32, g)[:2], lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False).load_state_dict(
            state
        )


def test_make_sgd_gives_ours_on_the_cpu_only():
    p = [torch.zeros(2, requires_grad=True)]
    assert type(make_sgd(p, torch.device("cpu"), OptimizerSettings())) is SGD
    assert type(make_sgd(p, torch.device("meta"), OptimizerSettings())) is torch.optim.SGD


@pytest.mark.slow
def test_a_run_on_the_cpu_never_loads_the_compiler_stack(tmp_path):
    """A fresh interpreter trains one tiny run of the uncertainty weighting (parameters of its own) with
    the worker unsandboxed, and runs a worker session in-process: neither loads dynamo or inductor."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from harness.isolation import wire
        from harness.isolation.sandbox import get_sandbox
        from harness.isolation.worker import LossSession
        from harness.protocol import OptimizerSettings, RunSpec, get_profile
        from harness.training.data import load_dataset, write_synthetic
        from harness.training.trainer import run_one

        tmp, submission = Path(sys.argv[1]), sys.argv[2]
        write_synthetic(tmp / "data", n_train=32, n_test=16)
        train, test = load_dataset(tmp / "data", dataset="synthetic")
        profile = get_profile("tiny").model_copy(update={"batch_size": 16})
        spec = RunSpec(submission="u.py", submission_sha256="0" * 64, profile=profile, arch="resnet20", seed=1,
                       device="cpu")
        outcome = run_one(spec, submission=Path(submission), train=train, test=test, run_dir=tmp / "run",
                          sandbox=get_sandbox("none"))
        assert outcome.result.status == "ok", outcome.result
        init = {"seed": 0, "max_params": 10**6, "optimizer": OptimizerSettings().model_dump()}
        session = LossSession(submission, init)
        for step in range(2):
            session.step(wire.StepRecord(0, 2, step, 5, 0.1, 4.0, 2.0, *[0.0] * 9, 0))
        assert session.state()["log_vars"] != [0.0, 0.0]
        print(sorted(m for m in sys.modules if m.startswith(("torch._dynamo", "torch._inductor"))))
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(REPO / "baselines" / "uncertainty.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
