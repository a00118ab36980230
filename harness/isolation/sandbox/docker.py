"""``docker``: the worker in a container, through the Docker SDK.

Enforced: no network (``network_mode=none``); read-only root filesystem; all capabilities
dropped; ``no-new-privileges``; uid/gid 65534; memory (no swap), process-count and CPU
limits; a size-capped tmpfs at /tmp; a cleared environment; no engine log (the ``none`` log
driver: what the worker prints reaches only the trainer's capped worker log); only the worker
script, the wire format beside it and the submission are mounted, read-only, into an image that
holds Python and torch and nothing else (see the top-level ``Dockerfile`` and ``harness image
build``). No GPU is requested.

The protocol runs over a Unix socket: the trainer listens in a private directory (0700: no other
local user can reach the socket or the staged files, which only bind mounts bring into the
container), the worker connects (``--connect``) and first sends a per-run secret that only the
container and the trainer hold (``--token-file``, a file bind-mounted read-only); a connection
without it gets nothing and is dropped, and the trainer goes on waiting for the real worker. The
trainer then reads and writes the connection directly, with no relay thread in the way of a step's
round trip. The
container's attach stream carries only what the worker prints, to the capped worker log.
:class:`DockerProcess` presents all this as a :class:`~harness.isolation.sandbox.WorkerProcess`.
Containers carry their owner's identity as labels (:func:`owner_labels`: the trainer's pid and
start time, its pid namespace, the machine's boot id and the user); the next time a backend starts
on the same engine it removes only the containers it can prove are orphans of its own kind: same
machine boot, same pid namespace, same user, and the owner process gone (no such pid, or a pid
reused by a process with another start time). A live owner also holds a lock (``flock``) on a file in
its private directory for as long as its container exists, which the kernel releases only when the
owner lets it go or ends: a container whose lock is held is never removed, whatever its labels say.
Another user's, another namespace's (a CI job, a container) and a live trainer's containers are never
touched, nor a container without these labels.
"""

from __future__ import annotations

import fcntl
import functools
import hmac
import os
import secrets
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.isolation.sandbox import (
    INSIDE_SUBMISSION,
    INSIDE_WIRE,
    INSIDE_WORKER,
    Sandbox,
    hand_over,
    private_dir,
    register_sandbox,
    stage,
    write_private,
)
from harness.isolation.sandbox.limits import Limits
from harness.isolation.sandbox.none import SINGLE_THREAD_ENV
from harness.util.procinfo import boot_id, pid_namespace, start_time

IMAGE = os.environ.get("HARNESS_SANDBOX_IMAGE", "harness-sandbox:latest")
LABEL = "harness.loss-worker"
OWNER = "harness.owner."  # prefix of the owner labels


def owner_labels() -> dict[str, str]:
    """The labels that say which process owns a worker container, and where it runs."""
    return {
        LABEL: str(os.getpid()),
        f"{OWNER}pid": str(os.getpid()),
        f"{OWNER}start": start_time(os.getpid()) or "",
        f"{OWNER}pidns": pid_namespace(),
        f"{OWNER}boot": boot_id(),
        f"{OWNER}uid": str(os.getuid()),
    }


OWNER_LOCK = "owner.lock"  # in the owner's private directory, beside the files mounted into the container


def hold_owner_lock(io_dir: Path) -> int:
    """A descriptor holding an exclusive lock on ``io_dir/owner.lock``: the owner's proof of life for
    its container. The kernel releases it when the descriptor is closed or this process ends, however
    it ends; no program this process starts inherits it (close-on-exec)."""
    fd = os.open(io_dir / OWNER_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        raise
    return fd


def owner_holds_lock(mounts: list[dict[str, Any]]) -> bool:
    """True when the owner of a container with these ``Mounts`` (as the engine reports them) still holds
    its lock. False when the lock is free or cannot be found (the directory is gone with its owner)."""
    sources = [m.get("Source") for m in mounts if m.get("Destination") == INSIDE_TOKEN]
    if not sources or not sources[0]:
        return False
    try:
        fd = os.open(Path(sources[0]).parent / OWNER_LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it the shared lock this check may have taken
    return False


def is_own_orphan(labels: dict[str, str]) -> bool:
    """True only when the container's owner was a trainer of this user, in this pid namespace, on this
    boot of this machine, and that process is gone. Anything unproven (missing labels, another
    namespace, another user) is not an orphan."""
    mine = owner_labels()
    keys = ("pidns", "boot", "uid")
    if any(not labels.get(f"{OWNER}{k}") or labels.get(f"{OWNER}{k}") != mine[f"{OWNER}{k}"] for k in keys):
        return False
    pid, start = labels.get(f"{OWNER}pid", ""), labels.get(f"{OWNER}start", "")
    if not pid.isdigit() or not start or int(pid) == os.getpid():
        return False
    return start_time(int(pid)) != start  # gone, or its pid reused by another process


INSIDE_SOCKET = "/sandbox/io/sock"  # where the protocol socket is bind-mounted
INSIDE_TOKEN = "/sandbox/token"  # and the run's secret
TOKEN_BYTES = 32
CONNECT_TIMEOUT_S = 60.0  # for the worker to start Python and connect (before it imports torch)
AUTH_TIMEOUT_S = 5.0  # for a connection to send the secret
MAX_PENDING = 16  # connections waiting to authenticate; the oldest goes when one more arrives


def _client() -> Any:
    import docker  # optional: only this backend needs it

    return docker.from_env(timeout=30)


@functools.cache
def docker_problem() -> str | None:
    """None when an engine answers and the sandbox image exists; otherwise which is missing."""
    try:
        client = _client()
        client.ping()
    except ImportError:
        return "the Docker SDK for Python is not installed (pip install docker)"
    except Exception as e:  # noqa: BLE001  (no engine, no permission, ...: all mean "not available")
        return f"no Docker engine answers ({type(e).__name__}: {str(e)[:300]})"
    try:
        client.images.get(IMAGE)
    except Exception as e:  # noqa: BLE001  (not found, or the engine failed: both mean "not available")
        if type(e).__name__ == "ImageNotFound":
            return f"the sandbox image {IMAGE} is not built: run harness image build"
        return f"the sandbox image {IMAGE} could not be looked up ({type(e).__name__}: {str(e)[:300]})"
    return None


class _Connection:
    """The read side of the protocol connection, as ``proc.stdout`` (a ``ReplyChannel``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _Stdin:
    """The write side of the protocol connection, as ``proc.stdin`` (a ``RequestChannel``). Its
    reading end is used by another thread, so it is not made non-blocking: sends use MSG_DONTWAIT."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def write_nowait(self, data: memoryview, /) -> int:
        """Send what fits now (``BlockingIOError`` if nothing does)."""
        return self.sock.send(data, socket.MSG_DONTWAIT)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class DockerProcess:
    """A started container as a :class:`~harness.isolation.sandbox.WorkerProcess`: ``stdin`` and
    ``stdout`` (the protocol connection), ``stderr`` (a pipe fed from the attach stream: everything
    the worker prints), ``poll``, ``wait``, ``kill``, ``release``, ``returncode``."""

    def __init__(self, container: Any, sock: socket.socket, conn: socket.socket, io_dir: Path, lock: int) -> None:
        self.container = container
        self.sock = sock  # the attach stream: the worker's output only
        self.conn = conn
        self.io_dir = io_dir
        self._lock: int | None = lock  # the owner's lock (hold_owner_lock), released once the container is gone
        self.returncode: int | None = None
        err_r, self._err_w = os.pipe()
        self.stdin = _Stdin(conn)
        self.stdout = _Connection(conn)
        self.stderr = os.fdopen(err_r, "rb")
        self._demux = threading.Thread(target=self._pump, daemon=True)
        self._demux.start()

    def _pump(self) -> None:
        """Attach-stream frames: ``<stream u8><3 pad><size u32 BE><payload>``."""
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= 8:
                    size = struct.unpack(">I", buf[4:8])[0]  # stdout and stderr alike
                    if len(buf) < 8 + size:
                        break
                    payload, buf = buf[8 : 8 + size], buf[8 + size :]
                    view = memoryview(payload)  # stdout and stderr alike: the worker log
                    while view:
                        view = view[os.write(self._err_w, view) :]
        except OSError:
            pass
        finally:
            os.close(self._err_w)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                self.container.reload()
                if self.container.status in ("exited", "dead"):
                    self.returncode = int(self.container.attrs["State"]["ExitCode"])
            except Exception:  # noqa: BLE001  (removed: it is gone)
                self.returncode = -9
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        try:
            self.returncode = int(self.container.wait(timeout=timeout)["StatusCode"])
        except Exception as e:  # noqa: BLE001
            if type(e).__name__ in ("ReadTimeout", "ConnectionError", "ReadTimeoutError"):
                raise subprocess.TimeoutExpired("docker wait", timeout or 0) from None
            self.returncode = -9  # the container was removed
        return self.returncode

    def kill(self) -> None:
        """Remove the container (and with it everything the worker started) and the connection."""
        try:
            self.container.remove(force=True)
        except Exception:  # noqa: BLE001  (already gone)
            pass
        for sock in (self.sock, self.conn):
            try:
                sock.close()
            except OSError:
                pass
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        shutil.rmtree(self.io_dir, ignore_errors=True)

    def release(self) -> None:
        """Nothing is left once :meth:`kill` removed the container."""


@register_sandbox
class DockerSandbox(Sandbox):
    name = "docker"

    @classmethod
    def problem(cls) -> str | None:
        return docker_problem()

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _client()
            self._remove_orphans()
        return self._client

    def _remove_orphans(self) -> None:
        """Remove the worker containers that trainers like this one left when they died (see the
        module's docstring: only what can be proven an orphan of its own)."""
        for container in self._client.containers.list(all=True, filters={"label": LABEL}):
            if is_own_orphan(dict(container.labels or {})) and not owner_holds_lock(
                container.attrs.get("Mounts") or []
            ):
                try:
                    container.remove(force=True)
                except Exception:  # noqa: BLE001  (another trainer removed it first)
                    pass

    def spawn(self, submission: Path) -> tuple[DockerProcess, str]:
        from docker.types import LogConfig  # optional: only this backend needs it

        env = dict(SINGLE_THREAD_ENV, PATH="/usr/local/bin:/usr/bin:/bin", LANG="C.UTF-8", HOME="/tmp")
        io_dir = private_dir("harness-io-")
        token = secrets.token_bytes(TOKEN_BYTES)
        container = listener = lock = None
        try:
            lock = hold_owner_lock(io_dir)  # before the container exists, until it is removed (DockerProcess.kill)
            stage(submission, io_dir, for_other_uid=True)
            write_private(io_dir / "token", token, for_other_uid=True)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(io_dir / "sock"))
            hand_over(io_dir / "sock", True)  # the worker runs as uid 65534; the 0700 directory keeps others out
            listener.listen(MAX_PENDING)
            container = self.client.containers.create(
                IMAGE,
                command=[
                    "python3",
                    "-I",
                    "-B",
                    INSIDE_WORKER,
                    "--connect",
                    INSIDE_SOCKET,
                    "--token-file",
                    INSIDE_TOKEN,
                ],
                stdin_open=False,
                tty=False,
                network_mode="none",
                read_only=True,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                user="65534:65534",
                mem_limit=self.limits.memory_bytes,
                memswap_limit=self.limits.memory_bytes,
                pids_limit=self.limits.max_processes,
                nano_cpus=int(self.limits.cpus * 1e9),
                tmpfs={"/tmp": f"size={self.limits.tmpfs_bytes},mode=1777"},
                environment=env,
                working_dir="/tmp",
                # file by file, from the private directory: neutral names, no host path of the run in the
                # mount table, and nothing of the directory itself (it stays 0700)
                volumes={
                    str(io_dir / "worker.py"): {"bind": INSIDE_WORKER, "mode": "ro"},
                    str(io_dir / "wire.py"): {"bind": INSIDE_WIRE, "mode": "ro"},
                    str(io_dir / "submission.py"): {"bind": INSIDE_SUBMISSION, "mode": "ro"},
                    str(io_dir / "token"): {"bind": INSIDE_TOKEN, "mode": "ro"},
                    str(io_dir / "sock"): {"bind": INSIDE_SOCKET, "mode": "rw"},
                },
                labels=owner_labels(),
                ipc_mode="none",
                # the engine's own log would copy everything the worker prints to the host disk
                # without a limit; the trainer reads the output from the attach stream and caps it
                log_config=LogConfig(type=LogConfig.types.NONE),
            )
            sock = self.client.api.attach_socket(container.id, params={"stdout": 1, "stderr": 1, "stream": 1})
            raw = sock._sock  # the SDK's SocketIO wraps the hijacked connection
            container.start()
            conn = accept_worker(listener, token, container_gone(container))
        except Exception as e:  # SDK errors become spawn failures for the run
            if container is not None:
                try:
                    container.remove(force=True)
                except Exception:  # noqa: BLE001
                    pass
            if lock is not None:
                os.close(lock)
            shutil.rmtree(io_dir, ignore_errors=True)
            raise OSError(f"docker could not start the sandbox container: {e}") from e
        finally:
            if listener is not None:
                listener.close()
        return DockerProcess(container, raw, conn, io_dir, lock), INSIDE_SUBMISSION


def container_gone(container: Any) -> Callable[[], str | None]:
    """For :func:`accept_worker`: the container's state when it has ended, else None."""

    def gone() -> str | None:
        container.reload()
        return container.status if container.status in ("exited", "dead") else None

    return gone


def accept_worker(
    listener: socket.socket, token: bytes, gone: Callable[[], str | None], timeout: float = CONNECT_TIMEOUT_S
) -> socket.socket:
    """The worker's connection: the first one that sends ``token`` within :data:`AUTH_TIMEOUT_S`.
    Any other connection (a local user who reached the socket, a second connection from inside) is
    sent nothing and closed, and waiting goes on; several are handled at once, so one that stays
    silent cannot hold the real worker back. Fails when ``gone()`` reports that the worker's
    container ended, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pending: dict[socket.socket, tuple[bytearray, float]] = {}
    listener.setblocking(False)

    def drop(conn: socket.socket) -> None:
        pending.pop(conn, None)
        conn.close()

    try:
        while True:
            now = time.monotonic()
            for conn, (_, expires) in list(pending.items()):
                if now > expires:
                    drop(conn)
            if now > deadline:
                raise OSError(f"the worker did not connect within {timeout:.0f} s")
            ready, _, _ = select.select([listener, *pending], [], [], 1.0)
            if not ready and (state := gone()) is not None:
                raise OSError(f"the worker did not connect (container {state})")
            for s in ready:
                if s is listener:
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    conn.setblocking(False)
                    if len(pending) >= MAX_PENDING:
                        drop(min(pending, key=lambda c: pending[c][1]))
                    pending[conn] = (bytearray(), now + AUTH_TIMEOUT_S)
                    continue
                got = pending[s][0]
                try:
                    chunk = s.recv(len(token) - len(got))
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                got += chunk
                if not chunk or (len(got) == len(token) and not hmac.compare_digest(bytes(got), token)):
                    drop(s)
                elif len(got) == len(token):
                    pending.pop(s)
                    s.setblocking(True)
                    return s
    finally:
        for conn in list(pending):
            drop(conn)
