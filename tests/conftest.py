"""Shared fixtures: a tiny synthetic dataset, helper to write submission files."""

from __future__ import annotations

import contextlib
import os
import socket
import textwrap
import threading
from pathlib import Path

import pytest

from harness.training.data import load_dataset, write_synthetic

REPO = Path(__file__).resolve().parent.parent
SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
BASELINES = REPO / "baselines"
REDTEAM = Path(__file__).resolve().parent / "redteam"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic dataset (600 train / 200 test), generated once per session."""
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic(root, seed=0, n_train=600, n_test=200)
    return root


@pytest.fixture(scope="session")
def tiny_splits(synthetic_root):
    train, test = load_dataset(synthetic_root, dataset="synthetic")
    return train.head(192), test.head(100)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test uses one session-wide cache dir, never the user's."""
    cache = tmp_path_factory.getbasetemp() / "harness-cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)


@pytest.fixture
def write_submission(tmp_path):
    """``write_submission(body, name='loss.py') -> Path``: dedented source to a file."""

    def write(body: str, name: str = "loss.py") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return path

    return write


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


def run_spec(profile, arch="resnet20", seed=42, submission="loss.py"):
    from harness.protocol import RunSpec

    return RunSpec(submission=submission, submission_sha256="0" * 64, profile=profile, arch=arch, seed=seed,
                   device="cpu")


def leaderboard_row(seed=42, status="ok", acc=12.5, **kw):
    """A valid leaderboard row (tiny profile, resnet20) with ``kw`` overriding any field."""
    from harness.protocol import LeaderboardRow

    values = dict(
        finished_at="2026-11-23T10:00:00+00:00", submission="loss.py", submission_sha256="ab" * 32,
        kind="submission", profile="tiny", phase="public", arch="resnet20", seed=seed, epochs=1,
        best_fine_acc=acc if status == "ok" else None, best_epoch=0 if status == "ok" else None,
        final_fine_acc=acc if status == "ok" else None, best_coarse_acc=30.0 if status == "ok" else None,
        wall_seconds=3.2, device="cpu", precision="fp32", channels_last=True, compile=False, deterministic=False,
        torch_version="2.13.0", harness_version="0.1.0", harness_commit="abc", sandbox="none",
        run_id=f"tiny/x/public/resnet20-seed{seed}", status=status,
    )
    values.update(kw)
    return LeaderboardRow(**values)


@pytest.fixture(scope="session")
def readme_smoke_run(tmp_path_factory):
    """The README's first command, run once: ``(CompletedProcess, its directory)``. Shared by the
    README test and the resume test, which compares a killed-and-resumed run against it."""
    import shutil
    import subprocess

    cwd = tmp_path_factory.mktemp("readme-smoke")
    r = subprocess.run([shutil.which("harness"), "evaluate", str(REPO / "submissions" / "example_loss.py"),
                        "--profile", "smoke"], cwd=cwd, capture_output=True, text=True, timeout=900,
                       env=harness_env(), stdin=subprocess.DEVNULL)
    return r, cwd


def _default_sigint() -> None:
    """As in a terminal: Ctrl-C interrupts (a test runner started in the background inherits
    SIGINT ignored, which Python would keep)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


class LiveHarness:
    """``harness ARGS`` running in its own session (as from a terminal), its output (stdout and
    stderr together) read line by line while it runs, so a test can act at a given moment."""

    def __init__(self, *args, cwd: Path, env: dict[str, str] | None = None) -> None:
        import queue
        import shutil
        import subprocess

        exe = shutil.which("harness")
        self.proc = subprocess.Popen([exe, *map(str, args)], cwd=cwd, env=env or harness_env(), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_default_sigint)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 300.0):
        """The match of the first new line matching the regular expression ``pattern``."""
        import queue
        import re
        import time

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

    def finish(self, timeout: float = 300.0) -> tuple[int, str]:
        """Wait for the exit; returns (exit code, all output)."""
        import queue

        rc = self.proc.wait(timeout)
        try:
            while (line := self._queue.get(timeout=10)) is not None:
                self.lines.append(line)
        except queue.Empty:
            raise AssertionError("harness exited but its output stays open: a process it started is still "
                                 "running:\n" + "\n".join(self.lines)) from None
        return rc, "\n".join(self.lines)

    def kill(self) -> None:
        import signal

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
