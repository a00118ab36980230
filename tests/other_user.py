"""Another local user of the machine, driven by the tests as the attacker (CI runs as root: the
attacker is an ordinary uid through ``setpriv``). Its programs run on Debian's own Python, which
every user can execute, and see only what that uid may see."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

UID = 12345
PYTHON = "/usr/bin/python3"


def require_other_uid() -> None:
    """Skip unless this process can act as another user (root, ``setpriv``, a Python for that user);
    where ``HARNESS_REQUIRE_OTHER_UID`` is set (CI), fail instead."""
    problem = (
        "not root"
        if os.geteuid() != 0
        else "setpriv is missing"
        if shutil.which("setpriv") is None
        else f"{PYTHON} is missing"
        if not os.access(PYTHON, os.X_OK)
        else None
    )
    if problem:
        if os.environ.get("HARNESS_REQUIRE_OTHER_UID"):
            pytest.fail(f"HARNESS_REQUIRE_OTHER_UID is set but another user cannot be played here: {problem}")
        pytest.skip(f"cannot act as another user here: {problem}")


def as_other(argv: list[str], **kwargs) -> list[str]:
    """``argv`` as the other user: its uid and gid, no supplementary groups, no capabilities."""
    return ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--inh-caps=-all", *argv]


def shared_dir() -> Path:
    """A fresh directory both users can write (the attacker's scripts and reports go there)."""
    path = Path(tempfile.mkdtemp(prefix="harness-test-attacker-"))
    path.chmod(0o777)
    return path


def run_as_other(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Python ``code`` run to its end as the other user (``sys.argv[1:]`` = ``args``)."""
    where = shared_dir()
    script = where / "attack.py"
    script.write_text(textwrap.dedent(code))
    script.chmod(0o644)
    try:
        return subprocess.run(
            as_other([PYTHON, "-I", str(script), *args]),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
        )
    finally:
        shutil.rmtree(where, ignore_errors=True)


PROWLER = r"""
import json, os, socket, sys, time
tmp, report, stop = sys.argv[1:4]
seen, successes = set(), []
while not os.path.exists(stop):
    try:
        entries = os.listdir(tmp)
    except OSError:
        entries = []
    for d in entries:
        if not d.startswith(("harness-io-", "harness-w-")):
            continue
        path = os.path.join(tmp, d)
        seen.add(path)
        try:
            names = os.listdir(path)
            successes.append(["list", path])
        except OSError:
            names = []
        for name in set(names) | {"sock", "submission.py", "worker.py", "token"}:
            target = os.path.join(path, name)
            if name == "sock":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(0.2)
                try:
                    s.connect(target)
                    successes.append(["connect", target])
                    s.sendall(b"x" * 32)  # a worker's first bytes would be the run's secret
                    data = s.recv(4096)
                    if data:
                        successes.append(["received", target, len(data)])
                except OSError:
                    pass
                finally:
                    s.close()
            else:
                try:
                    with open(target, "rb") as f:
                        f.read(1)
                    successes.append(["read", target])
                except OSError:
                    pass
    time.sleep(0.002)
with open(report, "w") as f:
    json.dump({"seen": sorted(seen), "successes": successes}, f)
"""


class Prowler:
    """The other user, watching the temp directory for the harness's staging and socket directories
    while a run goes on, trying to list them, read every file and connect to every socket. Use as a
    context manager around the run; :attr:`report` holds what it saw and what worked."""

    def __init__(self, tmp: str | None = None) -> None:
        self.tmp = tmp or tempfile.gettempdir()
        self.where = shared_dir()
        self.report: dict = {}

    def __enter__(self) -> Prowler:
        script = self.where / "prowl.py"
        script.write_text(PROWLER)
        script.chmod(0o644)
        args = [str(self.tmp), str(self.where / "report.json"), str(self.where / "stop")]
        self.proc = subprocess.Popen(
            as_other([PYTHON, "-I", str(script), *args]),
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        (self.where / "stop").touch()
        try:
            _, err = self.proc.communicate(timeout=60)
        finally:
            self.proc.kill()
        assert self.proc.returncode == 0, err.decode()[-2000:]
        self.report = json.loads((self.where / "report.json").read_text())
        shutil.rmtree(self.where, ignore_errors=True)
