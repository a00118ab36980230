"""The scheduler: takes submissions from the queue in the database's fair order and evaluates each
with a ``harness evaluate FILE --json`` child process, at most ``--concurrent`` at once.

A child is the command line itself, so it brings the sandbox, the per-epoch checkpoints, the resume
and the skip rule (a run with an ok row is not trained again) with it; the server only chooses what
runs next and records how it ended. Each child gets its own session (its process group is stopped as
one) and is told by the kernel to stop (SIGTERM, ``PR_SET_PDEATHSIG``) when the server dies, even by
SIGKILL: it stops as on Ctrl-C, keeping its checkpoints. A server started again waits for such a
leftover child to end, then puts every submission that was running back at the front of the queue;
its new child resumes the runs from their checkpoints and skips the finished ones, so every run has
exactly one row.

How a child's exit becomes a status: 0 ``done``; 1 ``failed`` (the runs' reasons); 2 ``rejected``
(the interface check in the sandbox refused the file; its message); anything else ``failed`` with the
exit code. Its standard output (the JSON outcome) and standard error (the log) go to private files.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from harness.serve import pipeline
from harness.serve.db import Database, Submission
from harness.serve.intake import private_dir, upload_path, write_private
from harness.serve.settings import ServeSettings

STOP_GRACE_S = 60.0  # how long a child may take to stop cleanly before it is killed
ATTEMPT_MARK = "=== harness serve: attempt"
_RUN_LINE = re.compile(r"^checking |: training |  epoch \d+/\d+ |^progress: |: (ok|failed)\b")


def entry_file(settings: ServeSettings, sub: Submission) -> Path:
    """Where the entry's file is evaluated from: its place in the leaderboard, one per participant."""
    return settings.files / "entries" / sub.participant / sub.entry


def log_path(settings: ServeSettings, sid: str) -> Path:
    return settings.files / "logs" / f"{sid}.log"


def outcome_path(settings: ServeSettings, sid: str) -> Path:
    return settings.files / "outcomes" / f"{sid}.json"


def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: a leftover child is stopped at the next start instead
        return None


_PRCTL = _prctl()  # looked up before any fork: the child only calls it


def _stop_with_parent(parent: int) -> Callable[[], None]:
    def setup() -> None:  # runs in the child between fork and exec
        if _PRCTL is not None:
            _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the server died before the line above
            os._exit(130)

    return setup


def _alive(pid: int, marker: str) -> bool:
    """Whether ``pid`` is a live ``harness evaluate`` of the file ``marker`` (its arguments include
    both ``evaluate`` and that path: a process that merely mentions the path is never one)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2][:1]
    except OSError:
        return False
    return "evaluate" in argv and marker in argv and state != "Z"


def leftovers(marker: str) -> list[int]:
    """The live processes whose command line contains ``marker`` (an entry file's path): the
    evaluations an earlier server left, found even if it died before recording their pid."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid() and _alive(int(proc.name), marker):
            found.append(int(proc.name))
    return found


def stop_leftover(pid: int, marker: str, grace: float = STOP_GRACE_S) -> None:
    """Stop a child of an earlier server that is still running: SIGTERM to its process group (its
    own session), then SIGKILL; never the server's own group."""
    if not _alive(pid, marker):
        return
    try:
        if os.getpgid(pid) == os.getpgrp():
            return
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid, marker):
        time.sleep(0.2)
    if _alive(pid, marker):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def attempt_log(text: str) -> str:
    """The part of a submission's log written by its latest attempt."""
    return text[text.rfind(ATTEMPT_MARK) :] if ATTEMPT_MARK in text else text


def judge(code: int, outcome: dict | None, log: str) -> tuple[str, str | None]:
    """The final status of an attempt that ended with ``code`` and its reason."""
    lines = attempt_log(log).splitlines()
    if code == 0:
        return "done", None
    if code == 2:
        start = next((i for i, line in enumerate(lines) if line.startswith("rejected:")), None)
        text = "\n".join(lines[start:]) if start is not None else "\n".join(lines[-20:])
        return "rejected", text.removeprefix("rejected:").strip() or "rejected (see the log)"
    runs = (outcome or {}).get("runs", [])
    reasons = [f"{r['arch']} seed {r['seed']}: {r['reason']}" for r in runs if r.get("reason")]
    errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    if reasons or errors:
        return "failed", "\n".join(reasons + errors[-3:])
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    return "failed", f"the evaluation process ended with {how}; see the log"


def progress(log: str) -> dict[str, object]:
    """What the latest attempt's log says of its progress (the command line's log lines)."""
    lines = [line for line in attempt_log(log).splitlines() if _RUN_LINE.search(line)]
    out: dict[str, object] = {"runs_ended": None, "runs": None, "last": lines[-1][:300] if lines else None}
    for line in reversed(lines):
        m = re.match(r"progress: (\d+)/(\d+) runs ended", line)
        if m:
            out["runs_ended"], out["runs"] = int(m.group(1)), int(m.group(2))
            break
    return out


def read_outcome(settings: ServeSettings, sid: str) -> dict | None:
    try:
        data = json.loads(outcome_path(settings, sid).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Runner:
    """The queue's consumer, inside the server's event loop; ``changed`` is called when a
    submission ends (the board may have new rows)."""

    def __init__(self, db: Database, settings: ServeSettings, changed: Callable[[], None] = lambda: None) -> None:
        self.db, self.settings, self.changed = db, settings, changed
        self.children: dict[str, asyncio.subprocess.Process] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.cancelling: set[str] = set()
        self.stopping = False
        self.wake = asyncio.Event()
        self.loop_task: asyncio.Task | None = None

    def recover(self) -> None:
        """Stop what an earlier server left running and queue it again (front of the queue)."""
        for sub in self.db.running():
            marker = str(entry_file(self.settings, sub))
            for pid in {*leftovers(marker), *([sub.pid] if sub.pid else [])}:
                stop_leftover(pid, marker)
            self.db.requeue(sub.id)

    async def start(self) -> None:
        self.loop_task = asyncio.create_task(self._loop())

    def poke(self) -> None:
        """Something was queued: look at the queue now."""
        self.wake.set()

    async def _loop(self) -> None:
        await asyncio.to_thread(self.recover)
        while not self.stopping:
            while len(self.tasks) < self.settings.concurrent and not self.stopping:
                sub = await asyncio.to_thread(self.db.claim_next)
                if sub is None:
                    break
                self.tasks[sub.id] = asyncio.create_task(self._evaluate(sub))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 2.0)
            self.wake.clear()

    async def _evaluate(self, sub: Submission) -> None:
        try:
            await self._attempt(sub)
        finally:
            self.tasks.pop(sub.id, None)
            self.children.pop(sub.id, None)
            self.cancelling.discard(sub.id)
            self.wake.set()
            self.changed()

    async def _attempt(self, sub: Submission) -> None:
        s = self.settings
        file = entry_file(s, sub)
        try:
            private_dir(file.parent)
            write_private(file, upload_path(s, sub.id).read_bytes())
        except OSError as e:
            await asyncio.to_thread(self.db.finish, sub.id, "failed", None, f"the upload could not be staged: {e}")
            return
        cmd = pipeline.evaluate_command(s, file)
        log = log_path(s, sub.id)
        fd_log = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fd_out = os.open(outcome_path(s, sub.id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
            os.write(fd_log, f"{ATTEMPT_MARK} {sub.attempts} at {when}: harness evaluate {sub.entry} ===\n".encode())
            env = dict(os.environ, COLUMNS="160")
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd_out,
                stderr=fd_log,
                env=env,
                start_new_session=True,
                preexec_fn=_stop_with_parent(os.getpid()),
            )
        except OSError as e:
            await asyncio.to_thread(self.db.finish, sub.id, "failed", None, f"the evaluation could not start: {e}")
            return
        finally:
            os.close(fd_log)
            os.close(fd_out)
        self.children[sub.id] = proc
        await asyncio.to_thread(self.db.set_pid, sub.id, proc.pid)
        code = await proc.wait()
        if self.stopping and sub.id not in self.cancelling:
            await asyncio.to_thread(self.db.requeue, sub.id)
            return
        if sub.id in self.cancelling:
            await asyncio.to_thread(self.db.finish, sub.id, "cancelled", code, "cancelled by its owner while running")
            return
        text = log.read_text(errors="replace")
        status, reason = judge(code, read_outcome(s, sub.id), text)
        if reason:  # the file as its owner named it, not the server's private path
            reason = reason.replace(str(file), sub.entry)
        await asyncio.to_thread(self.db.finish, sub.id, status, code, reason)

    def cancel(self, sid: str) -> None:
        """Stop a running submission (its owner asked); it ends ``cancelled``."""
        proc = self.children.get(sid)
        if proc is not None and proc.returncode is None:
            self.cancelling.add(sid)
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGTERM)

    async def stop(self) -> None:
        """Stop every child cleanly (they keep their checkpoints) and leave their submissions queued."""
        self.stopping = True
        self.wake.set()
        for proc in list(self.children.values()):
            if proc.returncode is None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGTERM)
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks.values()), timeout=STOP_GRACE_S)
            for proc in list(self.children.values()):
                if proc.returncode is None:
                    with contextlib.suppress(OSError):
                        os.killpg(proc.pid, signal.SIGKILL)
            if pending:
                await asyncio.wait(pending, timeout=10)
        if self.loop_task is not None:
            self.loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.loop_task
