"""``--compile``: the model's forward pass through ``torch.compile``, one run at a time.

Dynamo keeps what it compiled on the code objects it traced (``TwoHeadNet.forward``, the backbones'
``forward``), shared by every model of the process, and after ``recompile_limit`` variants of one
code object (8) it runs that frame eagerly without saying so. Several runs in one process (``--jobs
1`` over resnet20, resnet56 and vgg16bn, each with a training, an evaluation and possibly a
no-gradient pass) would exhaust that budget, and a later run's row would say ``compile=true`` for a
model that ran eagerly. So each run starts from empty caches (:func:`compile_forward`), and while it
trains, reaching the limit raises instead of falling back (:func:`no_silent_fallback`): a row that
says ``compile=true`` ran compiled.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import torch

BACKEND: str | Callable = os.environ.get("HARNESS_COMPILE_BACKEND") or "inductor"
"""The backend of ``--compile``: inductor, torch.compile's default. Tests set a cheaper one
(``aot_eager``, or a counting backend); ``harness selftest --device cpu`` sets
``HARNESS_COMPILE_BACKEND=aot_eager`` for its runs (inductor compiles for a minute on a small CPU)."""


def compile_forward(model: torch.nn.Module) -> Callable:
    """``model`` through ``torch.compile`` (sharing its parameters), for one run: dynamo's caches are
    emptied first, so the run inherits no compiled variant and no recompile count from an earlier
    run in this process. Runs in one process go one after another (no executor runs two at once)."""
    torch._dynamo.reset()
    return torch.compile(model, backend=BACKEND)


def compile_function(fn: Callable) -> Callable:
    """``fn`` (e.g. the fused seeds' forward) through ``torch.compile``, for one run, as
    :func:`compile_forward`."""
    torch._dynamo.reset()
    return torch.compile(fn, backend=BACKEND)


@contextlib.contextmanager
def no_silent_fallback(enabled: bool) -> Iterator[None]:
    """While a compiled run trains, reaching dynamo's recompile limit raises (the run fails with that
    reason) instead of running the frame eagerly under a row that says ``compile=true``. AOTAutograd's
    donated buffers are off: the per-task path backpropagates each task loss through the same graph
    (``retain_graph=True``), which a backward compiled with donated buffers refuses."""
    if not enabled:
        yield
        return
    with (
        torch._dynamo.config.patch(fail_on_recompile_limit_hit=True),
        torch._functorch.config.patch(donated_buffer=False),
    ):
        try:
            yield
        except torch._dynamo.exc.FailOnRecompileLimitHit as e:
            limit = torch._dynamo.config.recompile_limit
            raise RuntimeError(
                f"torch.compile reached its recompile_limit ({limit} variants of one function): the rest of the "
                "run would have run uncompiled while its row says compile=true, so it stops here"
            ) from e
