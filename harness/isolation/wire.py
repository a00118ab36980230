"""The loss worker's wire format: what the trainer and the worker send each other, one file that both
import.

This file is staged read-only beside ``worker.py`` in every sandbox; the worker loads it by path
before it imports the submission, and the trainer imports it as ``harness.isolation.wire``. It
imports nothing but the standard library (no torch, nothing of the harness).

Wire format (both directions): frames of ``<type: u8><length: u32 LE><payload>``. Control
payloads are UTF-8 JSON objects; the per-step request and reply are fixed-size
little-endian binary records (:data:`STEP_RECORD`, :data:`RESULT_RECORD`). Nothing is
ever pickled. The protocol runs over fds 0/1, or over a Unix socket connection when the
trainer passes ``--connect PATH`` (Docker); either way the worker moves it to private fds
before it imports the submission, so whatever the submission prints goes to stderr (the
worker log) and cannot corrupt the protocol.

Session::

    trainer -> INIT {"submission", "seed", "optimizer", "max_params", "dtype", "kwargs_inputs"}
    worker  -> READY {"capabilities", "num_params", "head_loss", "warnings"}   | ERROR {...}
    trainer -> STEP record                              (one per training step)
    worker  -> RESULT record                            | ERROR {...}
    trainer -> STATE                                   (optional, any time)
    worker  -> STATE {"params": {name: [values...]}}
    trainer -> SCALARS                                 (optional, after a step)
    worker  -> SCALARS {"scalars": {name: value}}      (what the module's scalars() reports)
    trainer -> CLOSE, or closes the pipe

Besides the frames and records: the limits and the one name rule both sides apply
(:func:`valid_name`), the optional inputs of ``forward`` (:data:`CAPABILITIES`), the optional
tools whose imports fail in the worker (:data:`OPTIONAL_TOOLS`), which the static check also reads,
and the worker's end of the transport (:func:`read_frame`, :func:`write_all`,
:func:`claim_protocol_fds`) and of its process (:func:`die_with_parent`, :func:`exit_now`).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
from typing import Any, NamedTuple

INIT, STEP, STATE, CLOSE, SCALARS = 1, 2, 3, 4, 5  # trainer -> worker
READY, RESULT, ERROR, STATE_REPLY, SCALARS_REPLY = 101, 102, 103, 104, 105  # worker -> trainer

HEADER = struct.Struct("<BI")
MAX_FRAME = 4 << 20  # bytes; a longer frame is a protocol violation

STEP_RECORD = struct.Struct("<qqqqddddddddddddI")
MAX_STATE_EXTRA = 10_000  # numbers of buffers and plain attributes in a state report, beyond the parameters
MAX_SCALARS, MAX_SCALAR_NAME = 8, 40  # what a module's optional scalars() may report: names, their length
MAX_STATE_NAME = 200
NAME_PUNCTUATION = frozenset(" _.:-/[]()+=,#%*")


def valid_name(name: object, limit: int) -> bool:
    """The one rule for a name the worker reports (a scalar's, a parameter's, a buffer's), applied on
    both sides: 1 to ``limit`` letters, digits and ``NAME_PUNCTUATION``, no leading or trailing
    space (no control, format, separator or markup character: nothing that hides, reorders, breaks
    a line or a table, or reaches a page as HTML)."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= limit
        and name == name.strip()
        and all(c.isalnum() or c in NAME_PUNCTUATION for c in name)
    )


class StepRecord(NamedTuple):
    epoch: int
    total_epochs: int
    step: int
    steps_per_epoch: int
    lr: float
    fine_loss: float
    coarse_loss: float
    g00: float
    g01: float
    g11: float
    batch_fine_acc: float
    batch_coarse_acc: float
    head_fine_sq: float
    head_coarse_sq: float
    after_fine: float
    after_coarse: float
    flags: int


FLAG_GRAMIAN, FLAG_ACCURACY, FLAG_HEAD_NORMS, FLAG_AFTER = 1, 2, 4, 8

RESULT_RECORD = struct.Struct("<dddddI")


class ResultRecord(NamedTuple):
    """``w_*``: dL/dL_k; ``h_*``: dH/dL_k, H the head loss (``L`` itself when the module defines no
    ``head_loss``). A derivative whose USES bit is clear is 0.0 and means "no dependency": that task
    gets no gradient at all."""

    loss: float
    w_fine: float
    w_coarse: float
    h_fine: float
    h_coarse: float
    flags: int


USES_FINE, USES_COARSE, HEAD_USES_FINE, HEAD_USES_COARSE = 1, 2, 4, 8
HEAD_LOSS = "head_loss"
"""Optional method ``head_loss(self, fine_loss, coarse_loss) -> 0-d tensor``: what the task heads
are trained on (head k receives ``dH/dL_k * grad L_k``); the shared parameters follow ``forward``."""

CAPABILITIES: dict[str, str] = {
    "gramian": "2x2 tensor G[i][j] = <g_i, g_j> of the per-task gradients (0 = fine, 1 = coarse) over "
    "the parameters both losses reach (the shared backbone in the task's topology), or over all "
    "parameters when none is shared (independent networks: G[0][1] = 0)",
    "step": "int, global training step, 0-indexed (epoch * steps_per_epoch + batch index)",
    "steps_per_epoch": "int, training steps per epoch",
    "batch_fine_acc": "float in [0, 1], fine accuracy of the current training batch before the update",
    "batch_coarse_acc": "float in [0, 1], coarse accuracy of the current training batch before the update",
    "head_sq_norms": "tensor (|g_fine|^2, |g_coarse|^2) over the parameters only that task's loss reaches, beyond "
    "those of `gramian` (each task's own head in the task's topology): G[k][k] + head_sq_norms[k] is the "
    "squared norm of task k's gradient over every parameter its loss reaches",
    "previous_losses_after_update": "tensor (fine, coarse): the previous call's batch, its losses recomputed after "
    "the update that call caused (a second forward pass, training mode, no gradient); None on a run's first call",
}
"""Optional keyword-only parameters of ``forward``; the trainer computes only those asked for."""

OPTIONAL_TOOLS = frozenset(
    {"wandb", "tensorboard", "tensorboardX", "torch.utils.tensorboard", "tqdm", "mlflow", "neptune", "comet_ml"}
    | {"clearml", "aim", "swanlab", "visdom"}
)
"""Experiment trackers and progress bars: a submission may import them only under ``try: ... except
ImportError:`` (the static check), and every such import fails in the worker whatever the environment
has installed, so the fallback always runs (``scalars()`` records numbers instead)."""

TRACEBACK_LIMIT = 4000  # characters of a submission's traceback that travel back


def pack_frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def pack_json(kind: int, obj: dict[str, Any]) -> bytes:
    return pack_frame(kind, json.dumps(obj, allow_nan=False).encode())


def pack_step(record: StepRecord) -> bytes:
    return pack_frame(STEP, STEP_RECORD.pack(*record))


def unpack_step(payload: bytes) -> StepRecord:
    return StepRecord._make(STEP_RECORD.unpack(payload))


def pack_result(record: ResultRecord) -> bytes:
    return pack_frame(RESULT, RESULT_RECORD.pack(*record))


def unpack_result(payload: bytes) -> ResultRecord:
    return ResultRecord._make(RESULT_RECORD.unpack(payload))


def read_exact(fd: int, n: int) -> bytes | None:
    chunks, remaining = [], n
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_frame(fd: int) -> tuple[int, bytes] | None:
    """The next frame's ``(type, payload)``, or None at the end of the input."""
    header = read_exact(fd, HEADER.size)
    if header is None:
        return None
    kind, length = HEADER.unpack(header)
    payload = read_exact(fd, length) if length else b""
    return None if payload is None else (kind, payload)


def claim_protocol_fds(connect: str | None = None, token_file: str | None = None) -> tuple[int, int]:
    """The worker's end of the transport: move the protocol to private fds; point fd 0 at /dev/null
    and fd 1 at stderr. With ``connect`` (a Unix socket path, the Docker backend's transport) the
    protocol runs over a connection to it instead of over fds 0/1, which first carries the run's
    secret read from ``token_file`` (the trainer talks only to a connection that sends it)."""
    if connect is not None:
        import socket

        token = b""
        if token_file is not None:
            with open(token_file, "rb") as f:
                token = f.read()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(connect)
        sock.sendall(token)
        proto_in = proto_out = sock.detach()  # a plain fd: os.read / os.write, non-inheritable
    else:
        proto_in, proto_out = os.dup(0), os.dup(1)  # non-inheritable by default
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return proto_in, proto_out


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the trainer dies (best effort)."""
    try:
        import ctypes

        parent = os.getppid()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    except (OSError, AttributeError):
        pass


def exit_now() -> None:
    """Leave at once once the trainer says so: what was printed or logged is flushed, and the
    interpreter's teardown (over half a second with torch loaded) is skipped."""
    try:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001  (a handler the submission added may fail: leave anyway)
        pass
    os._exit(0)
