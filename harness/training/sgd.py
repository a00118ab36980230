"""The model's SGD: ``torch.optim.SGD``'s arithmetic and state format, without torch.optim on the CPU.

``torch.optim``'s optimizers load torch's compiler stack (dynamo and inductor) when first used: about
2 s at the start of every training process, which a short run on the CPU (a test, the smoke profile)
pays in full. :class:`SGD` runs the tensor operations of ``torch.optim.SGD``'s single-tensor path,
the one it takes for CPU parameters, so it computes the same bits, and it reads and writes the same
``state_dict``, so that a checkpoint moves between the two (tests/test_sgd.py checks both against
``torch.optim.SGD``). :func:`make_sgd` gives it for CPU parameters and ``torch.optim.SGD`` itself for
others (on CUDA that takes its multi-tensor path, whose arithmetic this class does not claim).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeAlias

import torch

from harness.protocol import OptimizerSettings

GROUP_DEFAULTS = {"dampening": 0, "maximize": False, "foreach": None, "differentiable": False, "fused": None}


class SGD:
    """SGD with momentum, weight decay and Nesterov, dampening 0, one parameter group, CPU parameters.
    ``param_groups[0]["lr"]`` is read at every step (the trainer sets it each epoch)."""

    def __init__(
        self, params: Iterable[torch.Tensor], *, lr: float, momentum: float, weight_decay: float, nesterov: bool
    ) -> None:
        group = {"params": list(params), "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        self.param_groups: list[dict[str, Any]] = [{**group, "nesterov": nesterov, **GROUP_DEFAULTS}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """``torch.optim.SGD.step`` on CPU parameters: a parameter without a gradient is left alone."""
        group = self.param_groups[0]
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state.setdefault(p, {})  # as torch.optim's: an entry for every stepped parameter
            grad = p.grad if weight_decay == 0 else p.grad.add(p, alpha=weight_decay)
            if momentum != 0:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.detach().clone()
                else:
                    buf.mul_(momentum).add_(grad, alpha=1)
                grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
            p.add_(grad, alpha=-lr)

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.SGD.state_dict()``'s format: the state by parameter index, the group with the
        parameters' indices."""
        group = self.param_groups[0]
        index = {p: i for i, p in enumerate(group["params"])}
        return {
            "state": {index[p]: dict(s) for p, s in self.state.items()},
            "param_groups": [{**{k: v for k, v in group.items() if k != "params"}, "params": list(index.values())}],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A state from :meth:`state_dict` or ``torch.optim.SGD``'s; its buffers move to their parameters'
        device and dtype (as torch.optim does). Raises ValueError for another number of parameters."""
        (saved,) = state_dict["param_groups"]
        params = self.param_groups[0]["params"]
        if len(saved["params"]) != len(params):
            raise ValueError(f"the saved optimizer state is of {len(saved['params'])} parameters, not {len(params)}")
        position = {index: params[i] for i, index in enumerate(saved["params"])}
        self.param_groups[0].update({k: v for k, v in saved.items() if k != "params"})
        self.state = {
            position[int(i)]: {k: v.to(position[int(i)].device, position[int(i)].dtype) for k, v in s.items()}
            for i, s in state_dict["state"].items()
        }


Optimizer: TypeAlias = SGD | torch.optim.Optimizer


def make_sgd(params: Iterable[torch.Tensor], device: torch.device, settings: OptimizerSettings) -> Optimizer:
    """The protocol's SGD (``settings``): :class:`SGD` for parameters on the CPU, ``torch.optim.SGD`` for others."""
    options = settings.model_dump(include={"lr", "momentum", "weight_decay", "nesterov"})
    return SGD(params, **options) if device.type == "cpu" else torch.optim.SGD(params, **options)
