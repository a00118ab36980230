"""Trainers on one machine share its CPUs: the registry counts live trainers only, each takes its
share of threads, and OpenMP threads do not spin between parallel regions."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from harness.procinfo import start_time
from harness.training import sharing


def test_only_live_leases_count_and_dead_ones_go(tmp_path):
    me = f"{os.getpid()}-{start_time(os.getpid())}"
    (tmp_path / me).touch()
    (tmp_path / f"{os.getpid()}-1").touch()  # this pid with another start time: a reused pid, not a trainer
    (tmp_path / "999999999-5").touch()  # no such process
    (tmp_path / "junk").touch()
    assert sharing.live_trainers(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [me]  # this user's dead leases were removed


def test_each_trainer_takes_its_share(tmp_path, monkeypatch):
    monkeypatch.setattr(sharing, "usable_cpus", lambda: 12)
    others = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(3)]
    before = torch.get_num_threads()
    try:
        for p in others:
            (tmp_path / f"{p.pid}-{start_time(p.pid)}").touch()
        with sharing.CpuShare("cpu", directory=tmp_path) as share:
            assert sharing.live_trainers(tmp_path) == 4 and share.threads == 3 == torch.get_num_threads()
            others[0].kill()
            others[0].wait()
            share.tick(force=True)  # a trainer ended: the share grows
            assert share.threads == 4 == torch.get_num_threads()
        assert len(list(tmp_path.iterdir())) == 2  # its own lease is gone; the dead one was removed
        with sharing.CpuShare("cpu", cap=1, directory=tmp_path) as share:
            assert share.threads == 1  # an executor's own split caps it
        with sharing.CpuShare("cuda", directory=tmp_path) as share:
            assert share.lease is None and share.threads == 0  # a GPU run holds no lease
    finally:
        for p in others:
            p.kill()
            p.wait()
        torch.set_num_threads(before)


def test_openmp_threads_wait_passively_unless_told_otherwise():
    code = "import os, harness; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == \
        "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == \
        "ACTIVE"
