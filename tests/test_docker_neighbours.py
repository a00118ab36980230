"""Harnesses sharing one Docker engine: a harness removes only worker containers it can prove are
orphans of its own (same machine boot, pid namespace and user, owner process gone); a live run of
another harness, in another pid namespace, is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from helpers import require_sandbox

from harness.isolation.sandbox import docker as docker_backend


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
