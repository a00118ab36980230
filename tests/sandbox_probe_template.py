"""Conformance probe (a template: the test fills in the values in capitals). It tries
what a hostile submission would try, records each outcome, and prints one JSON line to
stderr, which the worker log keeps. It bypasses the static check on purpose: the sandbox
must hold even against code the static check would not see through."""
import json
import os
import socket
import subprocess
import sys

import torch
import torch.nn as nn

SECRET_FILE = "SECRET_FILE_PATH"
LEADERBOARD = "LEADERBOARD_PATH"
PORT = PORT_NUMBER
SECRET_ENV = "SECRET_ENV_NAME"


def attempt(fn):
    try:
        return {"ok": True, "value": fn()}
    except BaseException as e:  # noqa: BLE001
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:200]}


def write_tmp(n):
    with open(f"/tmp/probe-{n}", "wb") as f:
        f.write(b"0" * n)
    return n


def write_dev_shm(n):
    path = "/dev/shm/harness-probe"
    try:
        with open(path, "wb") as f:
            f.write(b"0" * n)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    return n


def spawn_many(n):
    procs = [subprocess.Popen(["/bin/sleep", "30"]) for _ in range(n)]
    for p in procs:
        p.kill()
        p.wait()
    return n


def detached_sleeper():
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", "SLEEP_SECONDS"])  # this probe's own: see test_conformance
        os._exit(0)
    os.waitpid(pid, 0)
    return "spawned"


def allocate(gib):
    blocks = [torch.ones(256, 1024, 1024, dtype=torch.float32) for _ in range(gib)]  # 1 GiB each
    return sum(b.numel() for b in blocks) * 4 // (1 << 30)


class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        report = {
            "network": attempt(lambda: socket.create_connection(("127.0.0.1", PORT), timeout=2).recv(64).decode()),
            "secret_file": attempt(lambda: open(SECRET_FILE).read()),
            "etc_passwd": attempt(lambda: open("/etc/passwd").read()),
            "secret_env": attempt(lambda: os.environ[SECRET_ENV]),
            "environ": sorted(os.environ),
            "write_leaderboard": attempt(lambda: open(LEADERBOARD, "a").write("forged,row\n")),
            "write_root": attempt(lambda: open("/forged", "w").write("x")),
            "write_tmp_small": attempt(lambda: write_tmp(1 << 20)),
            "write_tmp_64mib": attempt(lambda: write_tmp(64 << 20)),
            "write_dev_shm": attempt(lambda: write_dev_shm(1 << 20)),
            "uid": os.getuid(),
            "pid1_cmdline": attempt(lambda: open("/proc/1/cmdline", "rb").read().decode(errors="replace")),
            "self_cmdline": attempt(lambda: open("/proc/self/cmdline", "rb").read().decode(errors="replace")),
            "mountinfo": attempt(lambda: open("/proc/self/mountinfo").read()),
            "file": __file__,
            "cwd": attempt(os.getcwd),
            "sys_path": sys.path,
            "executable": sys.executable,
            "torch_file": torch.__file__,
            "threads": torch.get_num_threads(),
            "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "spawn_64": attempt(lambda: spawn_many(64)),
            "detached": attempt(detached_sleeper),
        }
        print("PROBE " + json.dumps(report), file=sys.stderr, flush=True)
        self.allocate = "ALLOCATE"

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        if self.allocate == "yes":
            allocate(3)
        return fine_loss + coarse_loss
