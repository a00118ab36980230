"""Harnesses sharing one Docker engine: a harness removes only worker containers it can prove are
orphans of its own (same machine boot, pid namespace and user, owner process gone, and the owner's
lock free); a live run of another harness, in another pid namespace, is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from helpers import REPO, harness_env, require_sandbox

from harness.isolation.sandbox import docker as docker_backend

EXAMPLE = REPO / "submissions" / "example_loss.py"
# what a harness does when its Docker backend starts: it removes the orphans it can prove
SWEEP = "from harness.isolation.sandbox import get_sandbox; get_sandbox('docker').client"
OWNER = f"""
from pathlib import Path
from harness.isolation.sandbox import get_sandbox
proc, _ = get_sandbox('docker').spawn(Path({str(EXAMPLE)!r}))
print(proc.container.id, flush=True)
import time; time.sleep(600)
"""


def _sweep_from_another_process() -> None:
    r = subprocess.run([sys.executable, "-c", SWEEP], env=harness_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_only_a_proven_orphan_of_this_kind_is_removed():
    mine = docker_backend.owner_labels()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = dict(mine, **{"harness.owner.pid": str(dead.pid), "harness.owner.start": "1"})
    assert docker_backend.is_own_orphan(gone)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        from harness.util.procinfo import start_time

        running = dict(mine, **{"harness.owner.pid": str(live.pid), "harness.owner.start": start_time(live.pid)})
        assert not docker_backend.is_own_orphan(running)
    finally:
        live.kill()
        live.wait()
    assert not docker_backend.is_own_orphan(dict(gone, **{"harness.owner.pidns": "pid:[1]"}))  # another namespace
    assert not docker_backend.is_own_orphan(dict(gone, **{"harness.owner.uid": str(os.getuid() + 1)}))  # another user
    assert not docker_backend.is_own_orphan(dict(gone, **{"harness.owner.boot": "another-boot"}))
    assert not docker_backend.is_own_orphan({docker_backend.LABEL: str(dead.pid)})  # an older harness: unproven
    assert not docker_backend.is_own_orphan(mine)  # this very process


@pytest.mark.docker
@pytest.mark.slow
def test_a_harness_in_another_pid_namespace_leaves_a_live_run_alone(readme_smoke_run):
    """The live run is the README's smoke evaluation (shared, see conftest.py): training in its Docker
    sandbox when another harness, in a new pid namespace, ran ``harness check --sandbox docker``."""
    require_sandbox("docker")
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare and root to start a harness in a new pid namespace")
    victim, cwd, other = readme_smoke_run
    assert "in sandbox 'docker'" in victim.stdout, victim.stdout  # the victim's worker is a Docker container
    assert isinstance(other, subprocess.CompletedProcess), other
    assert other.returncode == 0, other.stdout + other.stderr
    assert victim.returncode == 0 and "killed by signal" not in victim.stdout, victim.stdout
    assert ",ok" in (cwd / "leaderboard-smoke.csv").read_text()


@pytest.mark.docker
@pytest.mark.slow
def test_a_live_owners_container_stays_whatever_its_labels_say_and_a_dead_owners_goes(monkeypatch):
    """The owner's lock vetoes a removal that the labels alone would allow: here they claim an owner
    that is gone (a start time that is not this process's). An owner that was killed leaves its lock
    free: the next harness removes its container."""
    import docker

    sandbox = require_sandbox("docker")
    client = sandbox.client  # this process's own sweep, before its labels are forged
    forged = dict(docker_backend.owner_labels(), **{"harness.owner.start": "1"})
    with monkeypatch.context() as m:  # the labels are written when the container is created
        m.setattr(docker_backend, "owner_labels", lambda: forged)
        proc, _ = sandbox.spawn(EXAMPLE)
    try:
        _sweep_from_another_process()
        proc.container.reload()  # docker.errors.NotFound had it been removed
        assert proc.container.status == "running"
    finally:
        proc.kill()
    owner = subprocess.Popen([sys.executable, "-c", OWNER], env=harness_env(), stdout=subprocess.PIPE, text=True)
    try:
        container_id = (owner.stdout.readline() if owner.stdout else "").strip()
        assert container_id, "the owner printed no container id"
    finally:
        owner.kill()
        owner.wait()
    container = client.containers.get(container_id)
    io_dir = [m["Source"] for m in container.attrs["Mounts"] if m["Destination"] == docker_backend.INSIDE_TOKEN][0]
    assert not docker_backend.owner_holds_lock(container.attrs["Mounts"])  # the kernel let it go with the owner
    _sweep_from_another_process()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(container_id)
    shutil.rmtree(os.path.dirname(io_dir), ignore_errors=True)  # what the killed owner left in /tmp
