"""Harnesses sharing one Docker engine: a harness removes only worker containers it can prove are
orphans of its own (same machine boot, pid namespace and user, owner process gone); a live run of
another harness, in another pid namespace, is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from helpers import REPO, LiveHarness, harness_env, require_sandbox

from harness.isolation.sandbox import docker as docker_backend


def test_only_a_proven_orphan_of_this_kind_is_removed():
    mine = docker_backend.owner_labels()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = dict(mine, **{"harness.owner.pid": str(dead.pid), "harness.owner.start": "1"})
    assert docker_backend.is_own_orphan(gone)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        from harness.procinfo import start_time

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
def test_a_harness_in_another_pid_namespace_leaves_a_live_run_alone(tmp_path):
    require_sandbox("docker")
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare and root to start a harness in a new pid namespace")
    example = REPO / "submissions" / "example_loss.py"
    victim = LiveHarness("evaluate", example, "--profile", "smoke", "--arch", "resnet20", "--sandbox", "docker",
                         cwd=tmp_path)
    try:
        victim.wait_for(r"epoch 1/3", timeout=600)  # training, its worker container live
        other = subprocess.run(["unshare", "--pid", "--fork", shutil.which("harness"), "check", str(example),
                                "--sandbox", "docker"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                               env=harness_env(), stdin=subprocess.DEVNULL)
        assert other.returncode == 0, other.stdout + other.stderr
        rc, out = victim.finish(timeout=600)
    finally:
        victim.kill()
    assert rc == 0 and "killed by signal" not in out, out
    assert ",ok" in (tmp_path / "leaderboard-smoke.csv").read_text()
