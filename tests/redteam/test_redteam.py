"""Red-team suite: hostile submissions, one file each, with their expected outcomes.

Each case is checked twice:

* **static**: ``static_check`` on the file, as ``harness check`` / ``evaluate`` do first;
* **sandboxed**: the same file run *past* the static check (as if it had slipped through)
  in every real sandbox backend: the interface check, then a short training run.

Outcomes: ``rejected`` (by the interface check, before training), ``failed`` (the run
ends with ``status=failed`` and the reason shown), ``harmless`` (the run finishes and
nothing outside the sandbox changed). After every case: the host secret appears in no
message or log, the leaderboard is unchanged, the marker file outside the sandbox does
not exist, and no process the submission started is still running.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import harness_env, loopback_listener, require_sandbox, run_spec, tiny_profile

from harness.errors import SubmissionRejected
from harness.isolation.check import interface_check, static_check
from harness.training.trainer import run_one

# checks and trains hostile submissions in every sandbox backend; in one xdist worker, one after another:
# what a file left running is looked for machine-wide (hostile_processes), so two at once would see
# each other's
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("redteam")]

# (file, static check: message or None if it passes, sandboxed outcome, message)
CASES = [
    ("benign.py", None, "harmless", "the sandbox starts and trains a plain loss"),
    ("net_loopback.py", "import of 'socket' is not allowed", "harmless", "connection refused: no network"),
    ("read_host_file.py", "`open` is not allowed", "rejected", "FileNotFoundError (the host file is not there)"),
    ("read_environment.py", None, "harmless", "host variables are cleared"),  # os.environ reads are allowed
    ("write_leaderboard.py", "`open` is not allowed", "harmless", "read-only root; the paths do not exist"),
    ("walk_autograd_graph.py", "the attribute 'grad_fn' is not allowed", "harmless", "the losses are fresh leaves"),
    ("gc_objects.py", "import of 'gc' is not allowed", "harmless", "no model in the worker's memory"),
    ("getframe.py", "import of 'sys' is not allowed", "harmless", "only the worker's frames"),
    ("os_through_torch.py", "the attribute 'os' is not allowed", "harmless", "the shell runs inside the sandbox"),
    ("getattr_as_value.py", "`getattr` may only be called directly", "harmless", "os inside the sandbox only"),
    (
        "monkeypatch_torch.py",
        "modifying the module 'torch.nn.functional'",
        "harmless",
        "patches the worker's torch only",
    ),
    ("obfuscated_import.py", "the name '__builtins__' is not allowed", "harmless", "os inside the sandbox"),
    ("fork_bomb.py", "os.fork is not allowed", "rejected", "BlockingIOError (process limit)"),
    ("detached_process.py", "os.fork is not allowed", "harmless", "killed with the sandbox"),
    ("allocate_gibs.py", None, "rejected", "killed by signal SIGKILL (memory limit)"),
    ("hang_in_init.py", None, "rejected", "did not answer within"),
    ("hang_after_check.py", None, "failed", "did not answer within 3 s"),
    ("nan_after_first_epoch.py", None, "rejected", "non-finite loss (nan)"),
    ("returns_float.py", None, "rejected", "got builtins.float"),
    ("returns_vector.py", None, "rejected", "got shape (2,)"),
    ("returns_detached.py", None, "rejected", "does not depend on fine_loss or coarse_loss"),
    ("returns_constant.py", None, "rejected", "never depends on fine_loss"),
    ("huge_parameter.py", None, "rejected", "50,000,000 parameters; the limit is 1,000,000"),
    ("flood_output.py", "import of 'sys' is not allowed", "harmless", "protocol intact, log capped"),
    ("kill_parent.py", "os.kill is not allowed", "harmless", "its parent is the sandbox's init"),
    ("exit_mid_run.py", "os._exit is not allowed", "failed", "exit code 3"),
]

HERE = Path(__file__).parent
SECRET = "host-secret-7f3a9c"
REAL_BACKENDS = [pytest.param("bwrap", marks=pytest.mark.bwrap), pytest.param("docker", marks=pytest.mark.docker)]


@pytest.fixture
def host(tmp_path, monkeypatch):
    """Host-side bait: a secret file, a secret env var, a loopback listener, a leaderboard."""
    (tmp_path / "secret.txt").write_text(SECRET)
    monkeypatch.setenv("HARNESS_REDTEAM_SECRET", SECRET)
    leaderboard = tmp_path / "leaderboard.csv"
    leaderboard.write_text("schema_version,status\n1,ok\n")
    with loopback_listener(SECRET.encode()) as port:
        yield {"dir": tmp_path, "port": port, "leaderboard": leaderboard, "marker": tmp_path / "pwned-marker"}


def materialise(name: str, host: dict) -> Path:
    source = (
        (HERE / name)
        .read_text()
        .replace("REDTEAM_PORT", str(host["port"]))
        .replace("REDTEAM_SECRET_FILE", str(host["dir"] / "secret.txt"))
        .replace("REDTEAM_LEADERBOARD", str(host["leaderboard"]))
        .replace("REDTEAM_MARKER", str(host["marker"]))
    )
    path = host["dir"] / "submission" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(source)
    return path


def hostile_processes() -> list[int]:
    """Processes a red-team file starts: ``sleep 30x``."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
                state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if argv[:1] == [b"sleep"] and argv[1:2] in ([b"301"], [b"302"]) and state != "Z":
                found.append(int(d.name))
    return found


@pytest.mark.parametrize("name, static, outcome, message", CASES, ids=[c[0] for c in CASES])
def test_static_check(name, static, outcome, message, host):
    path = materialise(name, host)
    if static is None:
        static_check(path)
    else:
        with pytest.raises(SubmissionRejected) as e:
            static_check(path)
        assert static in str(e.value)


@pytest.mark.parametrize("backend", REAL_BACKENDS)
@pytest.mark.parametrize("name, static, outcome, message", CASES, ids=[c[0] for c in CASES])
def test_sandboxed(name, static, outcome, message, backend, host, small_splits):
    sandbox = require_sandbox(backend)
    path = materialise(name, host)
    leaderboard_before = host["leaderboard"].read_bytes()
    # two epochs of three steps (48 images in batches of 16): what a file does mid-run happens, at a third
    # of the training of the tiny profile's batches of 64
    profile = tiny_profile(epochs=2, batch_size=16, worker_call_timeout_s=3, worker_start_timeout_s=20)
    run_dir = host["dir"] / "run"
    observed, text = "harmless", ""
    try:
        interface_check(
            path,
            sandbox=sandbox,
            log_path=host["dir"] / "check.log",
            start_timeout=10,
            call_timeout=5,
            total_epochs=profile.epochs,
        )  # as evaluate does: the profile's run
    except SubmissionRejected as e:
        observed, text = "rejected", str(e)
    else:
        train, test = small_splits
        result = run_one(
            run_spec(profile, submission=name),
            submission=path,
            train=train,
            test=test,
            run_dir=run_dir,
            sandbox=sandbox,
        ).result
        if result.status == "failed":
            observed, text = "failed", result.reason
    time.sleep(0.3)
    leftovers = hostile_processes()
    for pid in leftovers:
        os.kill(pid, 9)

    expected_text = message.split(" (")[0]
    assert observed == outcome, text
    if outcome != "harmless":
        assert re.search(re.escape(expected_text), text), text
    logs = "".join(p.read_text(errors="replace") for p in host["dir"].rglob("*.log"))
    logs += (
        "".join(p.read_text(errors="replace") for p in run_dir.glob("*.*") if p.is_file()) if run_dir.exists() else ""
    )
    assert SECRET not in text and SECRET not in logs
    assert host["leaderboard"].read_bytes() == leaderboard_before
    assert not host["marker"].exists()
    assert not leftovers, f"processes left behind: {leftovers}"
    if name == "flood_output.py":
        log = (run_dir / "worker.log").read_bytes()
        assert len(log) < (1 << 20) + 200 and b"bytes of worker output were dropped" in log


CLI_CASES = [
    ("returns_vector.py", 2, []),
    ("huge_parameter.py", 2, []),
    ("hang_after_check.py", 1, ["failed"]),
    ("allocate_gibs.py", 2, []),
]


@pytest.mark.parametrize("backend", REAL_BACKENDS)
@pytest.mark.parametrize("name, code, statuses", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_evaluate_records_no_ok_row_for_hostile_runs(name, code, statuses, backend, host):
    require_sandbox(backend)
    path = materialise(name, host)
    lb = host["dir"] / "lb.csv"
    r = subprocess.run(
        [
            shutil.which("harness"),
            "evaluate",
            str(path),
            "--profile",
            "tiny",
            "--sandbox",
            backend,
            "--leaderboard",
            str(lb),
            "--runs-dir",
            str(host["dir"] / "runs"),
        ],
        capture_output=True,
        text=True,
        env=harness_env(),
        cwd=host["dir"],
        timeout=300,
    )
    assert r.returncode == code, r.stdout + r.stderr
    rows = pd.read_csv(lb)["status"].tolist() if lb.exists() else []
    assert rows == statuses and "ok" not in rows
    assert SECRET not in r.stdout + r.stderr
