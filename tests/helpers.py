"""Helpers shared by the test modules (fixtures stay in conftest.py): the repository paths, the
``harness`` command run as a user runs it (plain, on a pseudo-terminal, or live), run specs and
leaderboard rows, sandbox requirements, and direct loading of the baseline files."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import pty
import queue
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
BASELINES = REPO / "baselines"
REDTEAM = Path(__file__).resolve().parent / "redteam"


@contextlib.contextmanager
def loopback_listener(reply: bytes):
    """A TCP server on 127.0.0.1 that sends ``reply`` to whoever connects; yields its port.
    Bounded: it stops with the test."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(reply)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


REQUIRED_SANDBOXES = {s for s in os.environ.get("HARNESS_REQUIRE_SANDBOXES", "").split(",") if s}


def require_sandbox(name: str):
    """The backend, or skip the test when it is not installed here; a backend listed in
    ``HARNESS_REQUIRE_SANDBOXES`` (CI sets it) fails the test instead of skipping it."""
    from harness.isolation.sandbox import get_sandbox

    sandbox = get_sandbox(name)
    if not sandbox.available():
        if name in REQUIRED_SANDBOXES:
            pytest.fail(f"sandbox {name!r} is required here (HARNESS_REQUIRE_SANDBOXES) but not available")
        pytest.skip(f"sandbox {name!r} is not available on this host")
    return sandbox


def harness_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("COLUMNS", "160")
    return env


def tiny_profile(**overrides):
    """The ``tiny`` profile with overrides (for tests that call the trainer directly)."""
    from harness.protocol import get_profile

    return get_profile("tiny").model_copy(update=overrides)


def exact_profile(epochs: int = 2, batch_size: int = 16):
    """The tiny profile for the comparisons with a reference implementation: lr 0.1 (the weights move
    visibly in a few steps) and batches of 16 (a float64 ResNet-20 step on one core costs an eighth
    of one of 64). With ``small_splits`` (48 images): three steps an epoch."""
    return tiny_profile(
        epochs=epochs, batch_size=batch_size, optimizer=tiny_profile().optimizer.model_copy(update={"lr": 0.1})
    )


def run_spec(profile, arch="resnet20", seed=42, submission="loss.py"):
    from harness.protocol import RunSpec

    return RunSpec(
        submission=submission, submission_sha256="0" * 64, profile=profile, arch=arch, seed=seed, device="cpu"
    )


class Crash(BaseException):
    """Stands for a kill: not an Exception, so run_one does not turn it into a failed run."""


class CrashAfter:
    """A run observer that raises ``exc`` once epoch ``epoch`` is done (a stand-in for a kill; -1:
    never), and records each resume as ``(epochs_done, notes)``."""

    def __init__(self, epoch: int, exc: type[BaseException] = Crash) -> None:
        self.epoch, self.exc, self.resumed_at = epoch, exc, []

    def on_event(self, spec, event) -> None:
        from harness.events import EpochDone, RunResumed

        if isinstance(event, RunResumed):
            self.resumed_at.append((event.epochs_done, list(event.notes)))
        if isinstance(event, EpochDone) and event.metrics.epoch == self.epoch:
            raise self.exc


def run_metrics(run_dir: Path) -> list[dict]:
    """A run directory's metrics lines without their timings (which differ between two runs)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def leaderboard_row(seed=42, status="ok", acc=12.5, **kw):
    """A valid leaderboard row (tiny profile, resnet20) with ``kw`` overriding any field."""
    from harness.protocol import LeaderboardRow

    values = dict(
        finished_at="2026-11-23T10:00:00+00:00",
        submission="loss.py",
        submission_sha256="ab" * 32,
        kind="submission",
        profile="tiny",
        phase="public",
        arch="resnet20",
        seed=seed,
        epochs=1,
        best_fine_acc=acc if status == "ok" else None,
        best_epoch=0 if status == "ok" else None,
        final_fine_acc=acc if status == "ok" else None,
        best_coarse_acc=30.0 if status == "ok" else None,
        wall_seconds=3.2,
        device="cpu",
        precision="fp32",
        channels_last=True,
        compile=False,
        deterministic=False,
        protocol_version=1,
        torch_version="2.13.0",
        harness_version="0.1.0",
        harness_commit="abc",
        sandbox="none",
        run_id=f"tiny/x/public/resnet20-seed{seed}",
        status=status,
    )
    values.update(kw)
    return LeaderboardRow(**values)


# --- the ``harness`` command ------------------------------------------------------------------


def harness(*args, cwd, timeout=600, env: dict[str, str] | None = None):
    """``harness ARGS`` run to the end in ``cwd`` (with ``env`` added to the environment): the
    CompletedProcess (output captured as text)."""
    exe = shutil.which("harness")
    cmd = [exe] if exe else [sys.executable, "-m", "harness.cli"]
    return subprocess.run(
        cmd + [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**harness_env(), **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def read_leaderboard(path: Path) -> list[dict[str, str]]:
    """The rows of a leaderboard CSV as dicts of cells (strings)."""
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def harness_in_terminal(*args, cwd, columns: int, timeout=120) -> tuple[int, str]:
    """``harness ARGS`` on a pseudo-terminal ``columns`` wide, as a person sees it: ``(exit code,
    what the screen shows)`` with the colour and style codes removed."""
    code, raw = _in_pty(args, cwd, columns, timeout)
    return code, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw.replace("\r\n", "\n"))


def harness_on_screen(*args, cwd, columns: int, timeout=600) -> tuple[int, list[str], list[str]]:
    """``harness ARGS`` on a pseudo-terminal ``columns`` wide: ``(exit code, the lines the screen
    (and its scrollback) shows at the end, every line as it was drawn, live redraws included)``.
    Lines wider than the terminal appear wrapped, as a terminal wraps them; the drawn lines are
    what was written between two line starts, so a test can check that none was too wide."""
    code, raw = _in_pty(args, cwd, columns, timeout)
    return (code, *_screen(raw, columns))


def _screen(raw: str, columns: int) -> tuple[list[str], list[str]]:
    """A minimal terminal: text, CR, LF, cursor up and down, erase line (what Rich's live display
    and tables write); other escape sequences are ignored."""
    lines: list[list[str]] = [[]]
    drawn: list[str] = []
    row = col = 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b.|\r|\n|[^\x1b\r\n]", raw):
        if token in ("\r", "\n"):
            drawn.append("".join(lines[row]).rstrip())
            col = 0
            if token == "\n":
                row += 1
                lines += [[] for _ in range(row - len(lines) + 1)]
        elif token.startswith("\x1b["):
            n = int(token[2:-1]) if token[2:-1].isdigit() else 1
            if token[-1] == "A":
                row = max(0, row - n)
            elif token[-1] == "B":
                row += n
                lines += [[] for _ in range(row - len(lines) + 1)]
            elif token[-1] == "K":
                lines[row][col if token[2:-1] in ("", "0") else 0 :] = []
        elif not token.startswith("\x1b"):
            if col == columns:  # the terminal wraps
                row, col = row + 1, 0
                lines += [[] for _ in range(row - len(lines) + 1)]
            line = lines[row]
            line += [" "] * (col - len(line))
            line[col : col + 1] = [token]
            col += 1
    return ["".join(line).rstrip() for line in lines], drawn


def _in_pty(args, cwd, columns: int, timeout) -> tuple[int, str]:
    exe = shutil.which("harness")
    cmd = [exe] if exe else [sys.executable, "-m", "harness.cli"]
    env = {k: v for k, v in harness_env().items() if k not in ("COLUMNS", "LINES")}
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(cmd + [str(a) for a in args], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([master], [], [], 1.0)[0]:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    else:
        proc.kill()
    os.close(master)
    code = proc.wait(timeout=timeout)
    return code, b"".join(chunks).decode("utf-8", "replace")


def _default_sigint() -> None:
    """As in a terminal: Ctrl-C interrupts (a test runner started in the background inherits
    SIGINT ignored, which Python would keep)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class LiveHarness:
    """``harness ARGS`` running in its own session (as from a terminal), its output (stdout and
    stderr together) read line by line while it runs, so a test can act at a given moment."""

    def __init__(self, *args, cwd: Path, env: dict[str, str] | None = None) -> None:
        exe = shutil.which("harness")
        self.proc = subprocess.Popen(
            [exe, *map(str, args)],
            cwd=cwd,
            env=env or harness_env(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 300.0):
        """The match of the first new line matching the regular expression ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"harness ended before {pattern!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            m = re.search(pattern, line)
            if m:
                return m
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n" + "\n".join(self.lines))

    def wait_for_runs(self, n: int, reached: str, timeout: float = 300.0) -> dict[int, int]:
        """{seed: process id} of the first ``n`` runs of a ``--jobs`` evaluation, once each has said
        ``seed S: running in process P`` and a line where ``reached`` (a regular expression) follows
        ``seed S``: the two kinds of line come in any order, one run's may come between the other's."""
        processes: dict[int, int] = {}
        reached_by: set[int] = set()
        while len(processes) < n or len(reached_by) < n:
            m = self.wait_for(rf"seed (\d+)(?:: running in process (\d+)|{reached})", timeout)
            if m.group(2):
                processes[int(m.group(1))] = int(m.group(2))
            else:
                reached_by.add(int(m.group(1)))
        assert set(processes) == reached_by, (processes, reached_by)
        return processes

    def finish(self, timeout: float = 300.0) -> tuple[int, str]:
        """Wait for the exit; returns (exit code, all output)."""
        rc = self.proc.wait(timeout)
        try:
            while (line := self._queue.get(timeout=10)) is not None:
                self.lines.append(line)
        except queue.Empty:
            raise AssertionError(
                "harness exited but its output stays open: a process it started is still "
                "running:\n" + "\n".join(self.lines)
            ) from None
        return rc, "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def child_pids(pid: int) -> list[int]:
    """The direct children of process ``pid`` (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


# --- leaderboards --------------------------------------------------------------------------------

SEEDS = (42, 123, 456)


def write_leaderboard(path, rows, *, shipped=False):
    """``rows`` appended to ``path``; ``shipped``: to a copy of the repository's leaderboard.csv (its
    published rows), as a user's evaluation in the checkout appends to it."""
    from harness.results import append_row

    if shipped:
        shutil.copyfile(REPO / "leaderboard.csv", path)
    for row in rows:
        append_row(path, row)
    return path


# --- baselines loaded directly (outside the sandbox) -----------------------------------------------


def load(name: str):
    """A ``MultiTaskLoss`` from ``baselines/NAME.py``, imported directly."""
    spec = importlib.util.spec_from_file_location(f"baseline_{name}", BASELINES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MultiTaskLoss()


def call(loss, fine, coarse, epoch=0, total=10, **kwargs):
    """``(L, dL/dfine, dL/dcoarse)`` for loss values ``fine`` and ``coarse``."""
    f = torch.tensor(float(fine), requires_grad=True)
    c = torch.tensor(float(coarse), requires_grad=True)
    out = loss(f, c, epoch, total, **kwargs)
    d_f, d_c = torch.autograd.grad(out, [f, c], allow_unused=True)
    return float(out.detach()), 0.0 if d_f is None else float(d_f), 0.0 if d_c is None else float(d_c)


def gram(g_f, g_c, dtype=torch.float32):
    j = torch.stack([g_f, g_c])
    return (j @ j.T).to(dtype)


def random_pairs(n=200, dim=50, seed=0, dtype=torch.float32):
    """Random gradient pairs: every other pair made to conflict strongly; norms vary over 4 decades."""
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        g_f = torch.randn(dim, generator=g, dtype=dtype)
        g_c = torch.randn(dim, generator=g, dtype=dtype)
        if i % 2:
            g_c = g_c - 1.5 * g_f * (g_f @ g_c).sign().clamp(min=0) - 0.5 * g_f
        scale = 10 ** (4 * torch.rand((), generator=g, dtype=dtype) - 3)
        yield g_f * scale, g_c * (10 ** (torch.rand((), generator=g, dtype=dtype) - 0.5)) * scale
