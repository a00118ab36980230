"""A shared lab machine: no other local user can read, steer or stop a run (docs/sandboxes.md, "Who is
trusted"). The attacks are driven as the attacker: another uid (tests/other_user.py), through the
real CLI where the attack is on a run."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from helpers import REPO, harness, read_leaderboard, require_sandbox, run_spec, tiny_profile
from other_user import Prowler, as_other, require_other_uid, run_as_other, shared_dir

from harness.isolation import wire, worker
from harness.isolation.messages import WorkerError, scalars_report
from harness.isolation.sandbox import SANDBOX_UID, stage
from harness.isolation.sandbox.docker import accept_worker
from harness.training import sharing

EXAMPLE = REPO / "submissions" / "example_loss.py"


def _evaluate_tiny(sandbox: str, cwd: Path, env: dict[str, str]):
    """The example file, tiny profile, one ResNet-20 seed, in ``sandbox``: as a user runs it."""
    args = ("--profile", "tiny", "--arch", "resnet20", "--seed", "42", "--sandbox", sandbox)
    return harness("evaluate", EXAMPLE, *args, cwd=cwd, env=env)


# ------------------------------------------------------------------ the worker's channel


def _client(path: str, send: bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    if send:
        s.sendall(send)
    return s


def test_only_the_connection_with_the_runs_secret_is_the_worker(tmp_path):
    """Connections that come first (one silent, one with a wrong secret, one that hangs up) get
    nothing and are dropped; the real worker, connecting last, is the one accepted."""
    token = os.urandom(32)
    path = str(tmp_path / "sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    silent = _client(path, b"")
    wrong = _client(path, b"\0" * 32)
    short = _client(path, token[:10])
    short.close()
    real: list[socket.socket] = []
    timer = threading.Timer(0.3, lambda: real.append(_client(path, token + b"hello")))
    timer.start()
    conn = accept_worker(listener, token, lambda: None, timeout=10)
    timer.join()
    assert conn.recv(5) == b"hello"  # this is the real worker's connection
    for rogue in (silent, wrong):
        rogue.settimeout(5)
        assert rogue.recv(100) == b""  # closed without a byte
    conn.close()
    real[0].close()
    listener.close()


def test_no_worker_in_time_is_a_clear_failure(tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "sock"))
    listener.listen(1)
    _client(str(tmp_path / "sock"), b"")  # someone who never says the secret
    with pytest.raises(OSError, match="container exited"):
        accept_worker(listener, os.urandom(32), lambda: "exited", timeout=5)


def test_staged_files_are_private(tmp_path):
    staged = stage(EXAMPLE)
    try:
        assert stat.S_IMODE(staged.stat().st_mode) == 0o700 and staged.stat().st_uid == os.geteuid()
        for name in ("worker.py", "wire.py", "submission.py"):
            assert stat.S_IMODE((staged / name).stat().st_mode) == 0o600
        assert (staged / "submission.py").read_bytes() == EXAMPLE.read_bytes()
    finally:
        for p in staged.iterdir():
            p.unlink()
        staged.rmdir()
    docker_dir = tmp_path / "io"
    docker_dir.mkdir(mode=0o700)
    stage(EXAMPLE, docker_dir, for_other_uid=True)
    st = (docker_dir / "submission.py").stat()
    if os.geteuid() == 0:  # handed to the sandbox's user only
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (SANDBOX_UID, 0o400)
    else:  # readable through the bind mount; the 0700 directory keeps others out
        assert stat.S_IMODE(st.st_mode) == 0o644


@pytest.mark.slow
@pytest.mark.parametrize(
    "sandbox", [pytest.param("docker", marks=pytest.mark.docker), pytest.param("bwrap", marks=pytest.mark.bwrap)]
)
def test_another_user_cannot_reach_a_running_evaluation(sandbox, tmp_path):
    """Another uid watches the temp directory during a whole evaluation (the check's probe and the
    run), trying to list every staging directory, read every file and connect to every socket: it
    sees the directories' names, and nothing else works; the run is the harness's own."""
    require_other_uid()
    require_sandbox(sandbox)
    tmp = shared_dir()  # a temp directory as /tmp is (sticky, world-writable), this evaluation's alone
    tmp.chmod(0o1777)
    try:
        with Prowler(str(tmp)) as prowler:
            result = _evaluate_tiny(sandbox, tmp_path, {"TMPDIR": str(tmp)})
    finally:
        subprocess.run(["rm", "-rf", str(tmp)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert prowler.report["seen"], "the other user never saw a staging directory: the test proved nothing"
    assert prowler.report["successes"] == []
    rows = read_leaderboard(tmp_path / "leaderboard-tiny.csv")
    assert [(r["status"], r["sandbox"]) for r in rows] == [("ok", sandbox)]
    runs = tmp_path / "runs"
    assert stat.S_IMODE(runs.stat().st_mode) == 0o700  # the run's files, the submission's copy among them


# ------------------------------------------------------------------------ CPU sharing


@pytest.mark.slow
def test_a_planted_trainer_registry_changes_nothing(tmp_path):
    """What another user can plant where trainers used to register: a link to a private directory of
    the victim's, a name that is digits to str.isdigit but not to int, a directory at a likely name,
    thousands of files. An evaluation runs as if none of it were there, and nothing it points to is
    touched."""
    require_other_uid()
    victim = Path(tempfile.mkdtemp(prefix="harness-test-victim-"))  # 0700, root's
    (victim / "999999999-5").write_text("the victim's own file")
    (victim / "\u00b2-1").write_text("")
    planted = shared_dir()
    default = Path(tempfile.gettempdir()) / "harness-trainers"
    attack = run_as_other(
        """
        import os, sys
        planted, victim, default = sys.argv[1:4]
        os.symlink(victim, os.path.join(planted, "registry"))
        if not os.path.lexists(default):
            os.mkdir(default)
            os.chmod(default, 0o1777)
        for name in ["\u00b2-1", "1-\u00b2", "0-0", "x" * 200]:
            open(os.path.join(default, name), "w").close()
        for i in range(3000):
            open(os.path.join(default, f"junk{i}"), "w").close()
    """,
        str(planted),
        str(victim),
        str(default),
    )
    assert attack.returncode == 0, attack.stderr
    before = {p.name: p.read_bytes() for p in victim.iterdir()}
    try:
        env_registry = {"HARNESS_TRAINERS_DIR": str(planted / "registry")}
        result = _evaluate_tiny("none", tmp_path, env_registry)
        assert result.returncode == 0, result.stdout + result.stderr
        assert [r["status"] for r in read_leaderboard(tmp_path / "leaderboard-tiny.csv")] == ["ok"]
        assert stat.S_IMODE(victim.stat().st_mode) == 0o700
        assert {p.name: p.read_bytes() for p in victim.iterdir()} == before
    finally:
        subprocess.run(["rm", "-rf", str(planted), str(victim)])
        for name in ["\u00b2-1", "1-\u00b2", "0-0", "x" * 200]:
            (default / name).unlink(missing_ok=True)
        for junk in default.glob("junk*"):
            junk.unlink(missing_ok=True)


def test_sleeping_processes_and_forged_leases_do_not_shrink_a_share(tmp_path, monkeypatch):
    """Another user starts twenty idle processes and registers each as a trainer: a share is sized by
    what actually runs on the CPUs, so it stays (nearly) the whole machine."""
    require_other_uid()
    monkeypatch.setattr(sharing, "usable_cpus", lambda: 8)
    monkeypatch.delenv(sharing.THREADS_ENV, raising=False)
    planted = shared_dir()
    monkeypatch.setenv("HARNESS_TRAINERS_DIR", str(planted))  # where leases were read from before
    sleepers = [subprocess.Popen(as_other(["sleep", "60"])) for _ in range(20)]
    import torch

    before = torch.get_num_threads()
    try:
        time.sleep(0.3)
        forged = run_as_other(
            """
            import os, sys
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        start = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19]
                    except OSError:
                        continue
                    open(os.path.join(sys.argv[1], f"{pid}-{start}"), "w").close()
        """,
            str(planted),
        )
        assert forged.returncode == 0, forged.stderr
        with sharing.CpuShare("cpu") as share:
            # at most this machine's real cores are busy (other tests, CI): at least 8 - those remain
            assert share.threads >= 8 - os.cpu_count() and share.threads == torch.get_num_threads()
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
        subprocess.run(["rm", "-rf", str(planted)])
        torch.set_num_threads(before)


# -------------------------------------------------------------------- what a run keeps


def test_scalar_names_follow_one_rule_on_both_sides():
    """The trainer accepts exactly the names the worker may send: no line or paragraph separator,
    tab, soft hyphen, zero-width or markup character."""
    good = ["gate", "w_fine", "alpha[0]", "lr (x1e3)", "α", "loss/fine", "t=1,2"]
    bad = [
        "",
        " gate",
        "a\nb",
        "a\tb",
        "a\u2028b",
        "soft\u00adhyphen",
        "zero\u200bwidth",
        "<b>x</b>",
        "a&b",
        "x" * (wire.MAX_SCALAR_NAME + 1),
        'quote"d',
    ]
    for name in good:
        assert wire.valid_name(name, wire.MAX_SCALAR_NAME)
        assert scalars_report({"scalars": {name: 1.0}}) == {name: 1.0}
    for name in bad:
        assert not wire.valid_name(name, wire.MAX_SCALAR_NAME)
        with pytest.raises(WorkerError):
            scalars_report({"scalars": {name: 1.0}})

    class Module:
        def __init__(self, name):
            self.name = name

        def scalars(self):
            return {self.name: 1.0}

    for name in bad:
        with pytest.raises(worker.InterfaceError):
            worker.read_scalars(Module(name))


SLOW_SCALARS = """
import time
import torch
from torch import nn

class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return fine_loss + coarse_loss

    def scalars(self):
        time.sleep(0.6)
        return {"gate": 1.0}
"""

ROTATING_SCALARS = """
from torch import nn

class MultiTaskLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        self.calls += 1
        return fine_loss + coarse_loss

    def scalars(self):
        return {f"s{self.calls}_{i}": float(i) for i in range(8)}
"""


@pytest.mark.slow
def test_scalars_time_counts_in_the_run_budget(write_submission, tmp_path, tiny_splits):
    """A scalars() that takes its time cannot hold the trainer past the run's budget."""
    from harness.isolation.sandbox import get_sandbox
    from harness.training.trainer import run_one

    train, test = tiny_splits
    profile = tiny_profile(epochs=2, worker_run_budget_s=2.0, worker_call_timeout_s=30.0)
    outcome = run_one(
        run_spec(profile),
        submission=write_submission(SLOW_SCALARS),
        train=train,
        test=test,
        run_dir=tmp_path / "run",
        sandbox=get_sandbox("none"),
    )
    assert outcome.result.status == "failed"
    assert "time budget of 2 s" in outcome.result.reason and "scalars()" in outcome.result.reason


@pytest.mark.slow
def test_a_run_keeps_at_most_sixteen_scalar_names(write_submission, tmp_path, tiny_splits):
    """Eight new names at every logged step: the run keeps the first sixteen and counts the rest."""
    from harness.isolation.sandbox import get_sandbox
    from harness.results.rundir import RunDir
    from harness.training.steplog import MAX_RUN_SCALARS
    from harness.training.trainer import run_one

    train, test = tiny_splits
    outcome = run_one(
        run_spec(tiny_profile(epochs=2)),
        submission=write_submission(ROTATING_SCALARS),
        train=train,
        test=test,
        run_dir=tmp_path / "run",
        sandbox=get_sandbox("none"),
    )
    assert outcome.result.status == "ok", outcome.result.reason
    steps = RunDir(tmp_path / "run").read_steps()
    names = {name for line in steps for name in line.get("scalars", {})}
    assert len(names) == MAX_RUN_SCALARS == 16
    assert len(steps) > 2 and all(line.get("scalars_dropped") == 8 for line in steps[2:])
    assert sum(len(line.get("scalars", {})) + line.get("scalars_dropped", 0) for line in steps) == 8 * len(steps)


def test_thread_sharing_reads_only_the_kernel(tmp_path):
    """The competition from a /proc with known CPU times: busy processes count, this process and its
    descendants do not, entries that are not processes (or not readable) are skipped, and a command
    name holding ') ' does not shift the fields."""

    def write(root: Path, ticks: dict[int, tuple[int, int, str]]) -> None:
        for pid, (parent, used, comm) in ticks.items():
            (root / str(pid)).mkdir(exist_ok=True)
            fields = ["S", str(parent)] + ["0"] * 9 + [str(used), "0"] + ["0"] * 30
            (root / str(pid) / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields))

    root = tmp_path / "proc"
    root.mkdir()
    (root / "self").mkdir()
    (root / "\u00b2").mkdir()
    (root / "77").mkdir()  # a process that vanished: no stat
    hz = os.sysconf("SC_CLK_TCK")
    write(
        root,
        {
            10: (1, 0, "me"),
            11: (10, 0, "my worker"),
            20: (1, 0, "trainer ) x"),
            21: (1, 0, "idle"),
            22: (1, 0, "light"),
        },
    )
    before = sharing.sample(root)
    write(
        root,
        {
            10: (1, 5 * hz, "me"),
            11: (10, 5 * hz, "my worker"),
            20: (1, 5 * hz, "trainer ) x"),
            21: (1, 0, "idle"),
            22: (1, hz // 2, "light"),
            23: (1, 20 * hz, "new"),
        },
    )
    after = sharing.Sample(before.at + 5.0, sharing.sample(root).ticks, sharing.sample(root).parents)
    seen = sharing.competition(before, after, me=10)
    assert seen.competitors == 2  # the trainer at 1.0 CPU and the new process (capped at 1.0)
    assert seen.load == pytest.approx(1.0 + 0.1 + 1.0)
    assert sharing.fair_threads(2, seen) == 1
    assert sharing.fair_threads(64, sharing.Competition(1, 64.0)) == 32  # beside one that took everything
    assert sharing.fair_threads(64, sharing.Competition(10, 10.0)) == 54  # ten single-threaded neighbours
    assert sharing.fair_threads(2, sharing.Competition(0, 0.1)) == 2


def test_a_busy_neighbour_takes_its_share(monkeypatch):
    """A process spinning on a CPU is a competitor: a trainer next to it on this machine's CPUs takes
    at most the others."""
    monkeypatch.delenv(sharing.THREADS_ENV, raising=False)
    # not a child of this process (whose descendants are its own loss workers, never competitors): a
    # shell starts it in the background and exits, so that it is reparented away from us
    started = subprocess.run(
        ["sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    spinner = int(started.stdout)
    import torch

    before = torch.get_num_threads()
    try:
        assert spinner not in sharing._descendants(os.getpid(), sharing.sample().parents)
        time.sleep(0.5)
        with sharing.CpuShare("cpu") as share:
            assert share.threads <= max(1, sharing.usable_cpus() - 1)
        monkeypatch.setenv(sharing.THREADS_ENV, "3")  # the operator's fixed choice wins
        with sharing.CpuShare("cpu") as share:
            assert share.threads == 3 == torch.get_num_threads()
        with sharing.CpuShare("cpu", cap=1) as share:
            assert share.threads == 1  # an executor's own split caps it
        with sharing.CpuShare("cuda") as share:
            assert share.threads == 0  # a GPU run leaves torch's threads alone
    finally:
        os.kill(spinner, signal.SIGKILL)
        torch.set_num_threads(before)


def test_openmp_threads_wait_passively_unless_told_otherwise():
    code = "import os, harness; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert (
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()
        == "PASSIVE"
    )
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert (
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "ACTIVE"
    )
