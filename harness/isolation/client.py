"""The trainer's side of the loss worker: spawn it in a sandbox, exchange frames with
time limits, validate every reply, and turn every way it can fail into a
:class:`WorkerError` with a message for the submitter.

Every exchange has a deadline, writes included: the trainer writes to the worker without
blocking (a worker that stops reading cannot stall it once the pipe is full), the CLOSE
frame is best effort, and a reply that arrives before its request was sent is a protocol
violation.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.isolation import wire
from harness.isolation.inputs import kwargs_inputs
from harness.isolation.messages import (
    MAX_MESSAGE,
    MAX_STAGE,
    Ready,
    StepReply,
    StepRequest,
    WorkerError,
    loss_state,
    printable,
    scalars_report,
)
from harness.isolation.sandbox import OutputStream, Sandbox, WorkerProcess
from harness.protocol import OptimizerSettings

__all__ = ["LossWorker", "Ready", "StepReply", "StepRequest", "WorkerError", "printable"]

DEFAULT_MAX_PARAMS = 1_000_000
LOG_CAP_BYTES = 1 << 20  # of worker output kept per log; the rest is counted and dropped
# The reply to a step usually comes within ~100 us: the trainer polls without sleeping for this
# long before it blocks in select (it has nothing else to do meanwhile), which saves the wake-up
# latency of a blocking wait.
REPLY_SPIN_S = 0.0005


class _LogDrain(threading.Thread):
    """Copies the worker's stderr into its log, keeping at most ``cap`` bytes."""

    def __init__(self, pipe: OutputStream, path: Path | None, cap: int = LOG_CAP_BYTES) -> None:
        super().__init__(daemon=True)
        self.pipe, self.path, self.cap = pipe, path, cap
        self.kept = self.dropped = 0

    def run(self) -> None:
        with open(self.path or os.devnull, "wb") as log:
            while chunk := self.pipe.read1(1 << 16):
                room = max(0, self.cap - self.kept)
                if room:
                    log.write(chunk[:room])
                    log.flush()
                self.kept += min(room, len(chunk))
                self.dropped += len(chunk) - min(room, len(chunk))
            if self.dropped:
                log.write(f"\n[harness: {self.dropped:,} more bytes of worker output were dropped]\n".encode())
        self.pipe.close()


CLOSE_WRITE_S = 0.5  # the CLOSE frame is best effort: the worker is killed anyway


def _tail(path: Path | None, limit: int = 2000) -> str:
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - limit))
        return f.read().decode("utf-8", "replace").strip()


class LossWorker:
    """One loss worker for one run. Use as a context manager; the process (group) is
    killed on exit whatever happened."""

    def __init__(
        self,
        submission: Path,
        *,
        sandbox: Sandbox,
        seed: int,
        optimizer: OptimizerSettings,
        log_path: Path | None = None,
        start_timeout: float = 120.0,
        call_timeout: float = 30.0,
        max_params: int = DEFAULT_MAX_PARAMS,
        dtype: str = "float32",
        run_budget: float = float("inf"),
    ) -> None:
        self.submission = Path(submission)
        self.sandbox = sandbox
        self.seed = seed
        self.optimizer = optimizer
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.call_timeout = call_timeout
        self.max_params = max_params
        self.dtype = dtype
        self.run_budget = run_budget
        self.spent = 0.0  # seconds spent waiting for step replies, against run_budget
        self.sent_steps: list[bytes] = []  # every STEP frame sent since start (for checkpoints)
        self.proc: WorkerProcess | None = None
        self._drain: _LogDrain | None = None
        self._buffer = bytearray()
        self.ready: Ready | None = None
        self._pending: tuple[float, float] | None = None  # a sent request's (start, timeout), until its reply

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LossWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Ready:
        try:
            self.proc, inside_path = self.sandbox.spawn(self.submission)
        except OSError as e:
            raise WorkerError("spawn", f"could not start the loss worker ({type(e).__name__}: {e})") from e
        self._drain = _LogDrain(self.proc.stderr, self.log_path)
        self._drain.start()
        self._send(
            wire.pack_json(
                wire.INIT,
                {
                    "submission": inside_path,
                    "seed": self.seed,
                    "max_params": self.max_params,
                    "dtype": self.dtype,
                    "optimizer": self.optimizer.model_dump(include={"lr", "momentum", "weight_decay", "nesterov"}),
                    # the inputs forward reads from **kwargs, as the static check sees them
                    "kwargs_inputs": kwargs_inputs(self.submission),
                },
            ),
            self.start_timeout,
            "starting the loss module",
        )
        reply = self._recv(self.start_timeout, "starting the loss module")
        self.ready = Ready.from_json(self._expect_json(*reply, expected=wire.READY))
        return self.ready

    def close(self, *, graceful: bool = True) -> None:
        """Stop the worker: a CLOSE frame and up to 2 s to exit (``graceful``), then kill it. A worker
        that did not answer in time or broke the protocol is killed at once (``graceful=False``): it
        would not read the frame, and a hung one would keep a core busy for the wait."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if graceful and proc.poll() is None:  # best effort: never blocks
                self._write_before(proc, wire.pack_frame(wire.CLOSE), time.monotonic() + CLOSE_WRITE_S)
                proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired, ValueError, WorkerError):
            pass
        finally:
            proc.kill()  # the worker and whatever the submission started
            proc.wait()
            proc.release()
            self._join_drain()
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass

    # ------------------------------------------------------------------- requests

    def step(self, request: StepRequest) -> StepReply:
        """One training step: the worker's validated reply."""
        return self._step_frame(request.pack())

    def send_step(self, request: StepRequest) -> None:
        """The first half of :meth:`step`: send the request; :meth:`receive_step` reads the reply, so
        that the round trips of several workers overlap (the fused seeds of one architecture). The
        time from the request to its reply counts against the run's budget as in :meth:`step`."""
        frame = request.pack()
        self.sent_steps.append(frame)
        self._send_budgeted(frame, "computing the loss")

    def receive_step(self) -> StepReply:
        """The reply to the request :meth:`send_step` sent, validated."""
        return self._step_reply(*self._receive_budgeted("computing the loss"))

    def replay(self, frames: list[bytes]) -> None:
        """Send the STEP frames of an earlier run to this fresh worker, so that the loss module
        reaches the state it had (resuming from a checkpoint). Replies are checked, not used."""
        for frame in frames:
            self._step_frame(frame)

    def _step_frame(self, frame: bytes) -> StepReply:
        self.sent_steps.append(frame)
        return self._step_reply(*self._budgeted(frame, "computing the loss"))

    def _step_reply(self, kind: int, payload: bytes) -> StepReply:
        if kind != wire.RESULT or len(payload) != wire.RESULT_RECORD.size:
            self._unexpected(kind, payload)
        if self.ready is None:
            raise RuntimeError("start() first")
        return StepReply.unpack(payload, head_loss=self.ready.head_loss)

    def _budgeted(self, frame: bytes, doing: str) -> tuple[int, bytes]:
        """Send ``frame`` and receive the reply, within the call limit and what is left of the run's
        budget; the time spent counts against the budget (every request does: a step, ``scalars()``,
        the state report)."""
        self._send_budgeted(frame, doing)
        return self._receive_budgeted(doing)

    def _send_budgeted(self, frame: bytes, doing: str) -> None:
        """The request half of :meth:`_budgeted`; the reply's deadline starts now."""
        started = time.monotonic()
        timeout = min(self.call_timeout, self.run_budget - self.spent)
        try:
            with self._budget_error(timeout, doing):
                if timeout <= 0:
                    raise WorkerError("timeout", "no time left")
                self._send(frame, timeout, doing)
        except BaseException:
            self.spent += time.monotonic() - started
            raise
        self._pending = (started, timeout)

    def _receive_budgeted(self, doing: str) -> tuple[int, bytes]:
        """The reply half of :meth:`_budgeted`."""
        if self._pending is None:
            raise RuntimeError("a reply is read only after its request was sent")
        (started, timeout), self._pending = self._pending, None
        try:
            with self._budget_error(timeout, doing):
                return self._recv(timeout - (time.monotonic() - started), doing)
        finally:
            self.spent += time.monotonic() - started

    @contextlib.contextmanager
    def _budget_error(self, timeout: float, doing: str) -> Iterator[None]:
        """A timeout that the run's budget (not the per-call limit) set is the budget's error."""
        try:
            yield
        except WorkerError as e:
            if e.stage == "timeout" and timeout < self.call_timeout:
                self.close()
                raise WorkerError(
                    "budget",
                    f"the loss worker used up its time budget of {self.run_budget:.0f} s for this run "
                    f"(while {doing}); it was stopped",
                ) from None
            raise

    def state(self) -> dict[str, list[float]]:
        """The loss module's parameters by name (for reports; never fed back to training). Checked
        like any worker input: finite numbers only, at most as many as the module announced, names
        by the worker's own rule. Its time counts in the run's budget."""
        frame = self._budgeted(wire.pack_frame(wire.STATE), "reporting its parameters")
        reply = self._expect_json(*frame, expected=wire.STATE_REPLY)
        params = self.ready.num_params if self.ready is not None else self.max_params
        return loss_state(reply, params + wire.MAX_STATE_EXTRA)

    def scalars(self) -> dict[str, float]:
        """What the module's optional ``scalars()`` reports now (after the last step), checked as
        hostile input (:func:`~harness.isolation.messages.scalars_report`); empty without it. Its
        time counts in the run's budget."""
        reply = self._budgeted(wire.pack_frame(wire.SCALARS), "reporting its scalars()")
        return scalars_report(self._expect_json(*reply, expected=wire.SCALARS_REPLY))

    # ------------------------------------------------------------------- plumbing

    def _send(self, frame: bytes, timeout: float, doing: str) -> None:
        """Write one request within ``timeout`` seconds. A reply must not precede its request: data
        waiting to be read now (or left over from the last reply) is a protocol violation."""
        proc = self._started()
        if self._buffer or select.select([proc.stdout.fileno()], [], [], 0)[0]:
            if not self._buffer and not self._read_available():
                raise self._crashed(f"the loss worker exited while {doing}")
            self.close(graceful=False)
            raise WorkerError(
                "protocol", "the worker sent data before it was asked (a reply must follow its request); it was stopped"
            )
        try:
            sent = self._write_before(proc, frame, time.monotonic() + timeout)
        except OSError:
            raise self._crashed("the loss worker exited") from None
        if not sent:
            self.close(graceful=False)
            raise WorkerError(
                "timeout",
                f"the loss worker did not read its input within {timeout:.0f} s while {doing}; it was stopped",
            )

    def _started(self) -> WorkerProcess:
        if self.proc is None:
            raise RuntimeError("the loss worker is not running (start() first)")
        return self.proc

    @staticmethod
    def _write_before(proc: WorkerProcess, data: bytes, deadline: float) -> bool:
        """Write all of ``data`` to ``proc`` without blocking past ``deadline``; False if the time ran out."""
        stdin = proc.stdin
        view = memoryview(data)
        while view:
            try:  # a step's frame fits at once: wait only when the worker's side is full
                view = view[stdin.write_nowait(view) :]
                continue
            except BlockingIOError:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [stdin.fileno()], [], remaining)[1]:
                return False
        return True

    def _read_available(self) -> bool:
        """Read what is waiting on stdout into the buffer; False at end of file."""
        chunk = os.read(self._started().stdout.fileno(), 1 << 16)
        self._buffer += chunk
        return bool(chunk)

    def _join_drain(self) -> None:
        if self._drain is not None:
            self._drain.join(timeout=2)

    def _crashed(self, what: str) -> WorkerError:
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            self._join_drain()
        how = f" with exit code {code}" if code is not None else ""
        # a negative code is a signal; sandboxes (bwrap, docker) report 128 + signal
        sig = -code if code is not None and code < 0 else (code - 128 if code is not None and code > 128 else None)
        if sig is not None and sig in signal.valid_signals():
            how = f" (killed by signal {signal.Signals(sig).name}"
            how += ": the sandbox's memory limit is the usual cause)" if sig == signal.SIGKILL else ")"
        tail = _tail(self.log_path)
        return WorkerError("crash", f"{what}{how}", f"last worker output:\n{tail}" if tail else "")

    def _read_some(self, deadline: float, timeout: float, doing: str) -> None:
        fd = self._started().stdout.fileno()
        spin_until = time.perf_counter() + REPLY_SPIN_S  # poll first, then block in select
        while time.perf_counter() < spin_until:
            if select.select([fd], [], [], 0)[0]:
                break
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
        if not ready:
            self.close(graceful=False)
            raise WorkerError(
                "timeout", f"the loss worker did not answer within {timeout:.0f} s while {doing}; it was stopped"
            )
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise self._crashed(f"the loss worker exited while {doing}")
        self._buffer += chunk

    def _recv(self, timeout: float, doing: str) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        while len(self._buffer) < wire.HEADER.size:
            self._read_some(deadline, timeout, doing)
        kind, length = wire.HEADER.unpack_from(self._buffer)
        if length > wire.MAX_FRAME:
            raise WorkerError("protocol", f"the worker sent a frame of {length} bytes (limit {wire.MAX_FRAME})")
        while len(self._buffer) < wire.HEADER.size + length:
            self._read_some(deadline, timeout, doing)
        payload = bytes(self._buffer[wire.HEADER.size : wire.HEADER.size + length])
        del self._buffer[: wire.HEADER.size + length]
        if kind == wire.ERROR:
            self._raise_reported(payload)
        return kind, payload

    def _expect_json(self, got: int, payload: bytes, *, expected: int) -> dict[str, Any]:
        """A received frame ``(got, payload)`` that must be a JSON control message of type ``expected``."""
        if got != expected:
            self._unexpected(got, payload)
        try:
            obj = json.loads(payload)
        except Exception:  # noqa: BLE001  (hostile JSON: bad UTF-8, deep nesting, ...)
            obj = None
        if not isinstance(obj, dict):
            raise WorkerError("protocol", "the worker sent a malformed control message")
        return obj

    def _raise_reported(self, payload: bytes) -> None:
        try:
            obj = json.loads(payload)
            stage, message, tb = str(obj["stage"]), str(obj["message"]), str(obj.get("traceback", ""))
        except Exception:  # noqa: BLE001  (hostile JSON: bad UTF-8, deep nesting, not an object, ...)
            raise WorkerError("protocol", "the worker sent a malformed error report") from None
        raise WorkerError(stage[:MAX_STAGE], message[:MAX_MESSAGE], tb[: wire.TRACEBACK_LIMIT + 100])

    def _unexpected(self, kind: int, payload: bytes) -> None:
        raise WorkerError("protocol", f"the worker sent an unexpected frame (type {kind}, {len(payload)} bytes)")
