"""One conformance suite for every sandbox backend.

Each backend runs the same probe (``sandbox_probe_template.py``) and must hold the same
guarantees. ``none`` is not a sandbox: its known gaps are listed in ``NONE_GAPS`` and
asserted as gaps, so the day one closes the list must change.

Backends that are not installed are skipped, except those named in
``HARNESS_REQUIRE_SANDBOXES`` (comma-separated; CI sets it), which then fail instead.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import pytest
from helpers import REPO, loopback_listener, require_sandbox

from harness.isolation.client import LossWorker, StepRequest, WorkerError
from harness.protocol import OptimizerSettings

pytestmark = pytest.mark.slow  # starts workers in every sandbox backend

TEMPLATE = Path(__file__).parent / "sandbox_probe_template.py"
BACKENDS = [
    pytest.param("none"),
    pytest.param("bwrap", marks=pytest.mark.bwrap),
    pytest.param("docker", marks=pytest.mark.docker),
]

#: What ``--sandbox none`` does not protect against (it is for trusted code).
NONE_GAPS = {
    "network",
    "secret_file",
    "write_leaderboard",
    "write_tmp_64mib",
    "write_dev_shm",
    "uid_root",
    "spawn_64",
    "detached_survives",
    "memory",
}


def backend(name):
    return require_sandbox(name)


@pytest.fixture
def listener():
    """A loopback server that answers 'host-secret' to anyone who connects."""
    with loopback_listener(b"host-secret") as port:
        yield port


def make_probe(tmp_path, port, allocate="no"):
    """The probe file and the bait leaderboard; its detached sleeper sleeps ``tmp_path/sleep_seconds`` s, a
    number of its own: the tests of other backends may run at once, and their sleepers are not this one's."""
    seconds = str(300 + secrets.randbelow(100_000))
    (tmp_path / "sleep_seconds").write_text(seconds)
    secret = tmp_path / "secret.txt"
    secret.write_text("host-secret")
    leaderboard = tmp_path / "leaderboard.csv"
    leaderboard.write_text("schema_version\n")
    source = (
        TEMPLATE.read_text()
        .replace("SECRET_FILE_PATH", str(secret))
        .replace("LEADERBOARD_PATH", str(leaderboard))
        .replace("PORT_NUMBER", str(port))
        .replace("SECRET_ENV_NAME", "HARNESS_TEST_SECRET")
        .replace('"ALLOCATE"', f'"{allocate}"')
        .replace("SLEEP_SECONDS", seconds)
    )
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    return probe, leaderboard


def run_probe(sandbox, probe, log, steps=1):
    with LossWorker(
        probe, sandbox=sandbox, seed=0, optimizer=OptimizerSettings(), log_path=log, start_timeout=120, call_timeout=60
    ) as worker:
        worker.start()
        for i in range(steps):
            worker.step(StepRequest(0, 10, i, 5, 0.1, 2.0, 1.0))
    text = log.read_text(errors="replace")
    line = next(line for line in text.splitlines() if line.startswith("PROBE "))
    return json.loads(line[len("PROBE ") :]), text


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def _sleepers(seconds: str) -> set[int]:
    """Live ``sleep SECONDS`` processes."""
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
                if argv[:2] == [b"sleep", seconds.encode()] and _alive(int(d.name)):
                    pids.add(int(d.name))
            except OSError:
                pass
    return pids


@pytest.mark.parametrize("name", BACKENDS)
def test_conformance(name, tmp_path, listener, monkeypatch):
    sandbox = backend(name)
    monkeypatch.setenv("HARNESS_TEST_SECRET", "host-secret-env")
    probe, leaderboard = make_probe(tmp_path, listener)
    seconds = (tmp_path / "sleep_seconds").read_text()
    before = _sleepers(seconds)
    report, log = run_probe(sandbox, probe, tmp_path / "worker.log")
    time.sleep(0.5)
    leftover = _sleepers(seconds) - before
    for pid in leftover:  # never leave anything behind on the test machine
        os.kill(pid, 9)

    observed_gaps = {
        "network": report["network"]["ok"],
        "secret_file": report["secret_file"]["ok"],
        "write_leaderboard": report["write_leaderboard"]["ok"] or "forged" in leaderboard.read_text(),
        "write_tmp_64mib": report["write_tmp_64mib"]["ok"],
        "write_dev_shm": report["write_dev_shm"]["ok"],  # bwrap's /dev was a writable tmpfs of half the RAM
        "uid_root": report["uid"] == 0,
        "spawn_64": report["spawn_64"]["ok"],
        "detached_survives": bool(leftover),
    }
    expected = {gap: (name == "none" and gap in NONE_GAPS) for gap in observed_gaps}
    assert observed_gaps == expected, json.dumps(report, indent=1)

    # guarantees every backend gives, none included
    assert not report["secret_env"]["ok"] and "HARNESS_TEST_SECRET" not in report["environ"]
    assert "host-secret" not in json.dumps(report["environ"])
    assert report["threads"] == 1 and report["cuda_visible"] == ""
    assert report["write_tmp_small"]["ok"], report["write_tmp_small"]
    assert_neutral_paths(name, report, [str(REPO), str(tmp_path), "probe.py"], environment_paths())
    if name != "none":
        # bwrap mounts no /etc; docker's /etc is the image's own, not the host's
        host_passwd = Path("/etc/passwd").read_text()
        assert not report["etc_passwd"]["ok"] or report["etc_passwd"]["value"] != host_passwd
        assert not report["write_root"]["ok"]
        # pid 1 is the worker itself (bwrap --as-pid-1; Docker's entrypoint): no host path of the run shows
        assert str(tmp_path) not in json.dumps(report["pid1_cmdline"]), report["pid1_cmdline"]
        assert set(report["environ"]) <= {
            "PATH",
            "LANG",
            "HOME",
            "OMP_NUM_THREADS",
            "MKL_NUM_THREADS",
            "PYTHONHASHSEED",
            "CUDA_VISIBLE_DEVICES",
            "PWD",
            "LC_CTYPE",
            "HOSTNAME",
            "LD_LIBRARY_PATH",
        }
        assert report["environ"].count("LD_LIBRARY_PATH") == 0 or name == "bwrap"  # the interpreter's, neutral


def environment_paths() -> list[str]:
    """The interpreter and package directories of this process, as the worker of ``none`` is handed them
    and as bubblewrap's binds take them from the host (their real paths too)."""
    import sys

    from harness.isolation.sandbox import site_paths

    paths = [sys.executable, sys.prefix, sys.base_prefix, *site_paths()]
    return sorted({q for p in paths for q in (p, str(Path(p).resolve()))}, key=len, reverse=True)


def assert_neutral_paths(name, report, host_paths, environment):
    """What the worker sees names no host path. Precisely:

    - every backend: the worker's command line, ``__file__``, working directory, ``sys.path``,
      ``sys.executable`` and torch's location name none of ``host_paths`` (the checkout, the run's
      directory, the submission's name), except that ``none``, not a sandbox, runs the trainer's own
      interpreter with its package directories where they are: in its view, those paths of
      ``environment`` (and only those) may name the checkout, when the environment lives there;
    - bwrap: no mount point names a host path; the mount table's root field (a bind's source directory
      within its host filesystem, which the kernel shows and a bind cannot hide) names one only for a
      bind of the environment's directories;
    - docker: its own image, nothing of the host.
    """
    seen = json.dumps([report[k] for k in ("self_cmdline", "file", "cwd", "sys_path", "executable", "torch_file")])
    if name == "none":
        for path in environment:
            seen = seen.replace(path, "<environment>")
    for host in host_paths:
        assert host not in seen, (host, seen)
    assert report["file"].endswith("/submission.py")
    if name == "bwrap":
        assert report["executable"].startswith(("/sandbox/python/", "/usr/")), report["executable"]
        assert report["mountinfo"]["ok"], report["mountinfo"]
        for line in report["mountinfo"]["value"].splitlines():
            root, mount_point = line.split()[3:5]
            assert not any(host in mount_point for host in host_paths), line
            if any(host in root for host in host_paths):
                assert any(Path(root).is_relative_to(Path(p).resolve()) for p in environment), line
    if name == "docker":
        assert not any(host in json.dumps(report["mountinfo"]) for host in host_paths)


@pytest.mark.parametrize("name", BACKENDS[:2])
def test_neutral_paths_from_a_virtual_environment_inside_the_checkout(name, tmp_path, listener):
    """The README's first command creates ``.venv`` inside the checkout and the test command runs from
    it: a worker started from such an environment still sees no path of the checkout (bwrap: the
    interpreter at /sandbox/python, the venv's packages at /sandbox/site/N), and ``none`` names it only
    as the interpreter's and its packages' place."""
    import subprocess
    import sys

    backend(name)
    checkout = tmp_path / "checkout"
    venv = checkout / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    probe, _ = make_probe(tmp_path, listener)
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from harness.isolation.client import LossWorker\n"
        "from harness.isolation.sandbox import get_sandbox, site_paths\n"
        "from harness.protocol import OptimizerSettings\n"
        f"with LossWorker(Path({str(probe)!r}), sandbox=get_sandbox({name!r}), seed=0, optimizer=OptimizerSettings(),\n"
        f"                log_path=Path({str(tmp_path / 'worker.log')!r}), start_timeout=120) as w:\n"
        "    w.start()\n"
        "print(json.dumps([sys.executable, sys.prefix, sys.base_prefix, *site_paths()]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert r.returncode == 0, r.stderr
    environment = json.loads(r.stdout.splitlines()[-1])
    assert environment[0].startswith(str(checkout)) and any(p.startswith(str(checkout)) for p in environment[3:])
    log = (tmp_path / "worker.log").read_text(errors="replace")
    report = json.loads(next(x for x in log.splitlines() if x.startswith("PROBE "))[len("PROBE ") :])
    environment = sorted({q for p in environment for q in (p, str(Path(p).resolve()))}, key=len, reverse=True)
    assert_neutral_paths(name, report, [str(checkout), str(tmp_path), "probe.py"], environment)
    if name == "bwrap":  # the venv's own packages came in under a neutral path
        assert any(p.startswith("/sandbox/site/") for p in report["sys_path"]), report["sys_path"]


@pytest.mark.parametrize("name", BACKENDS)
def test_memory_cap(name, tmp_path, listener, request):
    sandbox = backend(name)
    if name == "none":  # the known gap, checked to stay what it is: allocating 3 GiB succeeds
        request.applymarker(pytest.mark.xfail(strict=True, reason="--sandbox none has no memory cap"))
    probe, _ = make_probe(tmp_path, listener, allocate="yes")
    with pytest.raises(WorkerError) as e:
        run_probe(sandbox, probe, tmp_path / "worker.log")
    assert e.value.stage in ("crash", "forward"), e.value
    assert "killed by signal SIGKILL" in str(e.value) or "out of memory" in str(e.value).lower()


@pytest.mark.bwrap
def test_bwrap_rlimit_fallback_caps_memory_and_cpu_time(tmp_path, monkeypatch):
    """Where cgroups cannot be used, bwrap's worker still runs under an address-space cap and a
    total CPU-time cap (the per-run budget counts only the trainer's waits for replies)."""
    import harness.isolation.sandbox.bwrap as bwrap
    from harness.isolation.sandbox.limits import CgroupSet, Limits

    sandbox = backend("bwrap")
    monkeypatch.setattr(bwrap, "make_cgroups", lambda limits: CgroupSet())
    probe = tmp_path / "limits.py"
    probe.write_text(
        "import resource, sys\nimport torch.nn as nn\n\n"
        "class MultiTaskLoss(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        print('LIMITS', resource.getrlimit(resource.RLIMIT_CPU)[0],\n"
        "              resource.getrlimit(resource.RLIMIT_AS)[0], file=sys.stderr, flush=True)\n\n"
        "    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):\n"
        "        return fine_loss + coarse_loss\n"
    )
    with LossWorker(
        probe, sandbox=sandbox, seed=0, optimizer=OptimizerSettings(), log_path=tmp_path / "log", start_timeout=120
    ) as worker:
        worker.start()
    line = next(x for x in (tmp_path / "log").read_text().splitlines() if x.startswith("LIMITS"))
    cpu, address_space = (int(v) for v in line.split()[1:])
    assert cpu == Limits().cpu_seconds and address_space == 4 * Limits().memory_bytes
