"""What the trainer and the loss worker say to each other, as the trainer sees it: the requests it
sends and the worker's replies, each validated as hostile input (every field checked, every text
made printable), and :class:`WorkerError`, the one way a worker's failure is reported.

The byte layouts are :mod:`harness.isolation.wire`'s (staged beside the sandboxed worker, which loads it too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.isolation import wire
from harness.util.text import printable

MAX_STAGE = 40  # characters of the worker's reported stage that are kept
MAX_MESSAGE = 2000
MAX_PARAM_NAME = wire.MAX_STATE_NAME
MAX_WARNING = 400  # characters of each warning in READY that are kept (at most five are)


class WorkerError(RuntimeError):
    """The loss worker failed. ``stage`` says where; ``detail`` holds the submission's
    traceback or the worker's last output, already truncated. Message and detail may quote
    what the worker sent; both are passed through :func:`printable`."""

    def __init__(self, stage: str, message: str, detail: str = "") -> None:
        message, detail = printable(message), printable(detail)
        super().__init__(message)
        self.stage = printable(stage)[:MAX_STAGE]
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message}\n{self.detail}".rstrip()


@dataclass(frozen=True)
class Ready:
    capabilities: tuple[str, ...]
    num_params: int
    head_loss: bool = False  # the module defines head_loss: the heads follow it, not forward
    warnings: tuple[str, ...] = ()  # what the worker found wrong but not fatal (a tensor nothing trains)

    @classmethod
    def from_json(cls, reply: dict[str, Any]) -> Ready:
        """Validate the worker's READY message."""
        caps = reply.get("capabilities")
        if not (isinstance(caps, list) and all(isinstance(c, str) and c in wire.CAPABILITIES for c in caps)):
            raise WorkerError("protocol", f"the worker announced unknown capabilities {caps!r}")
        num_params = reply.get("num_params")
        if not isinstance(num_params, int) or num_params < 0:
            raise WorkerError("protocol", "the worker announced an invalid parameter count")
        head_loss = reply.get("head_loss", False)
        if not isinstance(head_loss, bool):
            raise WorkerError("protocol", "the worker announced an invalid head_loss flag")
        warnings = reply.get("warnings", [])
        if not (isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)):
            raise WorkerError("protocol", "the worker announced invalid warnings")
        return cls(tuple(caps), num_params, head_loss, tuple(printable(w)[:MAX_WARNING] for w in warnings[:5]))


@dataclass(frozen=True)
class StepReply:
    """The worker's answer to one step. ``w_*``: ``dL/dL_k``, what the shared parameters get;
    ``h_*``: ``dH/dL_k``, what the task heads get (equal to ``w_*`` without a head loss). A task
    that ``L`` (``H``) does not use at all has ``uses_*`` (``head_uses_*``) False and gets no
    gradient there, exactly as in-process backpropagation would leave it."""

    loss: float
    w_fine: float
    w_coarse: float
    h_fine: float
    h_coarse: float
    uses_fine: bool
    uses_coarse: bool
    head_uses_fine: bool
    head_uses_coarse: bool

    @classmethod
    def unpack(cls, payload: bytes, *, head_loss: bool) -> StepReply:
        """Parse and validate a RESULT record (hostile input: every field is checked)."""
        loss, w_f, w_c, h_f, h_c, flags = wire.unpack_result(payload)
        if not all(math.isfinite(v) for v in (loss, w_f, w_c, h_f, h_c)):
            raise WorkerError("protocol", f"the worker replied with non-finite values {(loss, w_f, w_c, h_f, h_c)}")
        if flags >> 4:
            raise WorkerError("protocol", f"the worker replied with unknown flags {flags:#x}")
        reply = cls(
            loss,
            w_f,
            w_c,
            h_f,
            h_c,
            bool(flags & wire.USES_FINE),
            bool(flags & wire.USES_COARSE),
            bool(flags & wire.HEAD_USES_FINE),
            bool(flags & wire.HEAD_USES_COARSE),
        )
        unused = [
            v
            for v, used in (
                (w_f, reply.uses_fine),
                (w_c, reply.uses_coarse),
                (h_f, reply.head_uses_fine),
                (h_c, reply.head_uses_coarse),
            )
            if not used
        ]
        if any(v != 0.0 for v in unused):
            raise WorkerError("protocol", "the worker replied with a derivative for a loss it does not use")
        if not head_loss and (w_f, w_c, flags & 3) != (h_f, h_c, flags >> 2):
            raise WorkerError("protocol", "the worker replied with a head loss it did not announce")
        return reply


@dataclass(frozen=True)
class StepRequest:
    epoch: int
    total_epochs: int
    step: int
    steps_per_epoch: int
    lr: float
    fine_loss: float
    coarse_loss: float
    gramian: tuple[float, float, float] | None = None  # g00, g01, g11
    batch_accuracy: tuple[float, float] | None = None  # fine, coarse in [0, 1]
    head_sq_norms: tuple[float, float] | None = None  # |g_fine|^2, |g_coarse|^2 over each task's own head
    after_losses: tuple[float, float] | None = None  # the previous batch's losses after the last update

    def pack(self) -> bytes:
        flags = 0
        for value, flag in (
            (self.gramian, wire.FLAG_GRAMIAN),
            (self.batch_accuracy, wire.FLAG_ACCURACY),
            (self.head_sq_norms, wire.FLAG_HEAD_NORMS),
            (self.after_losses, wire.FLAG_AFTER),
        ):
            flags |= flag if value is not None else 0
        return wire.pack_step(
            wire.StepRecord(
                self.epoch,
                self.total_epochs,
                self.step,
                self.steps_per_epoch,
                self.lr,
                self.fine_loss,
                self.coarse_loss,
                *(self.gramian or (0.0, 0.0, 0.0)),
                *(self.batch_accuracy or (0.0, 0.0)),
                *(self.head_sq_norms or (0.0, 0.0)),
                *(self.after_losses or (0.0, 0.0)),
                flags,
            )
        )


def _finite_number(x: object) -> bool:
    """A JSON number the trainer accepts: a finite float, or an int a float holds exactly."""
    return (type(x) is float and math.isfinite(x)) or (type(x) is int and abs(x) <= 2**53)


def loss_state(reply: dict[str, Any], limit: int) -> dict[str, list[float]]:
    """Validate the worker's parameter report: finite numbers only, at most ``limit`` of them,
    names by the worker's own rule (:func:`~harness.isolation.wire.valid_name`)."""
    params = reply.get("params")
    if (
        not isinstance(params, dict)
        or not all(
            wire.valid_name(k, MAX_PARAM_NAME) and isinstance(v, list) and all(_finite_number(x) for x in v)
            for k, v in params.items()
        )
        or sum(len(v) for v in params.values()) > limit
    ):
        raise WorkerError("protocol", "the worker's parameter report is malformed")
    return {k: [float(x) for x in v] for k, v in params.items()}


def scalars_report(reply: dict[str, Any]) -> dict[str, float]:
    """Validate the worker's report of what the module's ``scalars()`` said (the worker checked it
    too, but runs beside the submission): at most :data:`~harness.isolation.wire.MAX_SCALARS`
    names by the worker's own rule (:func:`~harness.isolation.wire.valid_name`), finite numbers
    only."""
    scalars = reply.get("scalars")
    if (
        not isinstance(scalars, dict)
        or len(scalars) > wire.MAX_SCALARS
        or not all(wire.valid_name(k, wire.MAX_SCALAR_NAME) and _finite_number(v) for k, v in scalars.items())
    ):
        raise WorkerError("protocol", "the worker's report of the module's scalars() is malformed")
    return {k: float(v) for k, v in scalars.items()}
