"""``harness serve`` as its users meet it: a real server on a loopback port, driven through a real
HTTP client (httpx), the ``harness participants`` and ``harness submit`` commands, and headless
Chromium. Evaluations use the tiny profile without a sandbox (the sandbox is not what is tested here)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from helpers import REPO, harness, harness_env, leaderboard_row  # noqa: E402

from harness.results import append_row  # noqa: E402

pytestmark = pytest.mark.slow
EXAMPLE = REPO / "submissions" / "example_loss.py"
# passes the static check, refused by the interface check in the sandbox (no training): cheap to evaluate
NOT_A_LOSS = """\
import torch.nn as nn


class MultiTaskLoss(nn.Module):
    def forward(self, fine_loss, coarse_loss, epoch, total_epochs):
        return "not a tensor"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``harness serve`` in ``cwd`` on a free loopback port; its output goes to ``log``."""

    def __init__(self, cwd: Path, *extra: str, port: int | None = None) -> None:
        self.cwd, self.extra, self.port = cwd, extra, port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        args = ["serve", "--profile", "tiny", "--sandbox", "none", "--port", str(self.port), *self.extra]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "harness.cli", *args],
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=harness_env(),
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/api/leaderboard/version", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.3)
        raise AssertionError(f"the server did not answer within 120 s:\n{self.log.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def add_participant(cwd: Path, name: str) -> str:
    r = harness("participants", "add", name, cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert "shown this once" in r.stderr
    return r.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def upload(url: str, token: str, filename: str, data: bytes, name: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/api/submissions",
        headers=bearer(token),
        files={"file": (filename, data)},
        data={"name": name} if name else None,
        timeout=60,
    )


def wait_done(url: str, token: str, sid: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/api/submissions/{sid}", headers=bearer(token), timeout=60)
        assert r.status_code == 200, r.text
        sub = r.json()
        if sub["status"] in ("done", "failed", "rejected", "cancelled"):
            return sub
        time.sleep(1)
    raise AssertionError(f"submission {sid} did not end within {timeout} s: {sub}")


def csv_rows(path: Path, entry: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r["submission"] == entry]


def test_upload_poll_results_privacy_and_the_live_page(tmp_path):
    alice, bob = add_participant(tmp_path, "alice"), add_participant(tmp_path, "bob")
    # the final phase's hidden architecture, evaluated by the operator: never shown by a public board
    append_row(
        tmp_path / "leaderboard-tiny.csv",
        leaderboard_row(
            submission="hidden_probe.py", phase="final", arch="vgg16bn", acc=77.7, run_id="tiny/h/final/vgg16bn-seed42"
        ),
    )
    with Server(tmp_path) as server:
        url = server.url
        before = httpx.get(f"{url}/api/leaderboard/version").json()["version"]
        r = upload(url, alice, "example_loss.py", EXAMPLE.read_bytes())
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        # nobody else learns anything of it: 404 as for a submission that does not exist, no list, no cancel
        for who in (bob,):
            assert httpx.get(f"{url}/api/submissions/{sid}", headers=bearer(who)).status_code == 404
            assert httpx.get(f"{url}/api/submissions/{'0' * 16}", headers=bearer(who)).status_code == 404
            assert httpx.delete(f"{url}/api/submissions/{sid}", headers=bearer(who)).status_code == 404
            assert httpx.get(f"{url}/api/submissions", headers=bearer(who)).json()["submissions"] == []
        assert httpx.get(f"{url}/api/submissions/{sid}").status_code == 401
        # nor take its name, in any letter case
        for name in ("example_loss.py", "Example_Loss.py"):
            r = upload(url, bob, name, EXAMPLE.read_bytes())
            assert r.status_code == 400 and "belongs to another participant" in r.json()["error"], r.text
        # a baseline's name stays reserved, with the command line's message
        r = upload(url, bob, "dwa.py", EXAMPLE.read_bytes())
        assert r.status_code == 400 and "dwa.py is a baseline's name" in r.json()["error"]

        sub = wait_done(url, alice, sid)
        assert sub["status"] == "done" and sub["exit_code"] == 0, sub
        assert sub["outcome"]["runs"][0]["status"] == "ok" and sub["outcome"]["profile"] == "tiny"
        assert "epoch 1/1" in sub["log"] and list(sub["worker_logs"]) == ["resnet20 seed 42"]
        rows = csv_rows(tmp_path / "leaderboard-tiny.csv", "example_loss.py")
        assert len(rows) == 1 and rows[0]["status"] == "ok"
        run = sub["outcome"]["runs"][0]
        assert rows[0]["submission_sha256"] == sub["submission_sha256"] == run["submission_sha256"]
        assert [r["run_id"] for r in sub["rows"]] == [rows[0]["run_id"]]
        assert float(rows[0]["best_fine_acc"]) == pytest.approx(run["best_fine_acc"], abs=1e-3)

        # the board's JSON is the command line's
        cli = harness(
            "leaderboard",
            "--format",
            "json",
            "--leaderboard",
            "leaderboard-tiny.csv",
            "--profile",
            "tiny",
            "--runs-dir",
            "runs",
            cwd=tmp_path,
        )
        assert cli.returncode == 0, cli.stderr
        served = httpx.get(f"{url}/api/leaderboard", timeout=300)
        assert served.status_code == 200 and served.json() == json.loads(cli.stdout)
        assert [e["entry"] for e in served.json()["entries"]] == ["example_loss.py"]
        assert "vgg16bn" not in served.text and "77.7" not in served.text
        # the live page's refresh: a new version once the row landed, and the board shows the entry
        assert httpx.get(f"{url}/api/leaderboard/version").json()["version"] != before
        fragment = httpx.get(f"{url}/board", timeout=300).text
        assert "<td>example_loss.py</td>" in fragment and "vgg16bn" not in fragment

        # harness submit --wait: the same file again is evaluated as a new submission whose run is
        # skipped (it has its row); the outcome is printed as evaluate --json prints it
        env = dict(harness_env(), HARNESS_TOKEN=alice)
        sent = subprocess.run(
            [sys.executable, "-m", "harness.cli", "submit", str(EXAMPLE), "--server", url, "--wait"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )
        assert sent.returncode == 0, sent.stderr
        outcome = json.loads(sent.stdout)
        assert set(outcome) == {
            "exit_code",
            "leaderboard",
            "profile",
            "phase",
            "runs",
            "standing",
            "skipped",
            "rejected",
            "checks",
        }
        assert outcome["runs"] == [] and len(outcome["skipped"]) == 1  # its one run has its row
        assert outcome["standing"][0]["entry"] == "example_loss.py"
        assert len(csv_rows(tmp_path / "leaderboard-tiny.csv", "example_loss.py")) == 1  # still one row

        # a revoked token stops working at once
        assert harness("participants", "revoke", "bob", cwd=tmp_path).returncode == 0
        assert httpx.get(f"{url}/api/submissions", headers=bearer(bob)).status_code == 401

        page = _chromium_dom(url + "/", tmp_path / "page.png")
        board = page[page.index('id="board"') :]
        assert "<td>example_loss.py</td>" in board and "Submit a loss" in page

    # tokens never reach a log; uploads and the database are private
    log = server.log.read_text()
    assert alice not in log and bob not in log and alice.split("_", 2)[2] not in log
    files = tmp_path / "harness-serve.sqlite.files"
    assert (tmp_path / "harness-serve.sqlite").stat().st_mode & 0o777 == 0o600
    for path in [files, *files.rglob("*")]:
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path


def _chromium_dom(url: str, shot: Path) -> str:
    """The page's DOM after its scripts ran, and a screenshot of it at ``shot``."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("HARNESS_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed, and HARNESS_REQUIRE_BROWSER is set")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]
    subprocess.run(
        [browser, *flags, "--window-size=1200,1000", f"--screenshot={shot}", url], capture_output=True, timeout=300
    )
    assert shot.exists() and shot.stat().st_size > 10_000
    dom = subprocess.run(
        [browser, *flags, "--virtual-time-budget=3000", "--dump-dom", url], capture_output=True, text=True, timeout=300
    )
    return dom.stdout


def test_intake_refuses_with_the_command_lines_messages(tmp_path):
    """Hostile names, a file over the size limit and a file the static check refuses are 400s with
    the message ``harness check`` gives for the same file; nothing is stored or queued."""
    alice = add_participant(tmp_path, "alice")
    files = tmp_path / "files"
    files.mkdir()
    cases = {
        "loss\u202egnp.py": EXAMPLE.read_bytes(),  # a right-to-left override: displays as loss.png
        "<img src=x onerror=alert(1)>.py": EXAMPLE.read_bytes(),
        "big.py": b"# " + b"x" * 70_000 + b"\n",
        "sneaky.py": EXAMPLE.read_bytes() + b"\nimport os\nos.system('id')\n",
    }
    for name, data in cases.items():
        (files / name).write_bytes(data)
    with Server(tmp_path) as server:
        for name, data in cases.items():
            r = upload(server.url, alice, name, data)
            assert r.status_code == 400, (name, r.text)
            cli = harness("check", name, "--sandbox", "none", cwd=files)
            assert cli.returncode == 2
            assert cli.stderr.strip() == "rejected: " + r.json()["error"], name
        # a path for a name: refused as `--name` is, and nothing lands outside the server's folders
        r = upload(server.url, alice, "ok.py", EXAMPLE.read_bytes(), name="../../escape.py")
        assert r.status_code == 400 and "the name '../../escape.py' cannot name an entry" in r.json()["error"]
        assert "pass another name, e.g. --name escape.py" in r.json()["error"].lower()
        r = upload(server.url, alice, "../../escape.py", EXAMPLE.read_bytes())
        assert r.status_code == 400 and "contains '/' at position 3" in r.json()["error"]
        # over the request limit: 413 before the body is read
        r = httpx.post(
            f"{server.url}/api/submissions",
            headers=bearer(alice),
            files={"file": ("huge.py", b"x" * (2 * 1024 * 1024))},
            timeout=60,
        )
        assert r.status_code == 413 and "over 1,048,576 bytes" in r.json()["error"]
        # no token, a wrong token: 401 with the Bearer challenge; the headers of every response
        r = httpx.post(f"{server.url}/api/submissions", files={"file": ("a.py", b"")})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = upload(server.url, alice[:-1] + "x", "a.py", b"")
        assert r.status_code == 401 and "not valid" in r.json()["error"]
        page = httpx.get(server.url + "/", timeout=300)
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
        assert httpx.get(f"{server.url}/api/submissions", headers=bearer(alice)).json()["submissions"] == []
    assert not list(tmp_path.rglob("escape.py")) and not (tmp_path / "runs").exists()
    assert list((tmp_path / "harness-serve.sqlite.files" / "uploads").iterdir()) == []


def test_quota_and_request_rate(tmp_path):
    alice, bob = add_participant(tmp_path, "alice"), add_participant(tmp_path, "bob")
    with Server(tmp_path, "--quota", "2/hour") as server:
        for i in range(2):
            r = upload(server.url, alice, f"not_a_loss_{i}.py", NOT_A_LOSS.encode())
            assert r.status_code == 201, r.text
        r = upload(server.url, alice, "not_a_loss_2.py", NOT_A_LOSS.encode())
        assert r.status_code == 429, r.text
        wait = int(r.headers["retry-after"])
        assert 3600 - 60 <= wait <= 3600 + 1  # the first of the two frees its slot an hour after it was made
        assert "the next slot opens at" in r.json()["error"] and r.json()["retry_after"] == wait
        assert upload(server.url, bob, "bobs.py", NOT_A_LOSS.encode()).status_code == 201  # a quota each
        # both of alice's end rejected by the interface check in the sandbox, with its message
        sub = wait_done(
            server.url,
            alice,
            httpx.get(f"{server.url}/api/submissions", headers=bearer(alice)).json()["submissions"][-1]["id"],
        )
        assert sub["status"] == "rejected" and sub["exit_code"] == 2
        # evaluate --json's outcome: no run, the file among the rejected (under the server's private path)
        assert sub["outcome"]["runs"] == [] and len(sub["outcome"]["rejected"]) == 1
        # the file as she named it (not the server's private path), and the check's own words
        assert sub["reason"].startswith("not_a_loss_0.py: interface check failed"), sub["reason"]
        assert "must return a 0-d floating torch.Tensor" in sub["reason"]
    with Server(tmp_path, "--rate-limit", "5/minute") as server:  # the start itself asked once
        codes = [httpx.get(f"{server.url}/api/leaderboard/version").status_code for _ in range(6)]
        assert codes[:4] == [200] * 4 and codes[-1] == 429, codes


def test_kill_9_with_one_running_and_one_queued_loses_nothing(tmp_path):
    """The server is killed with SIGKILL while alice's submission trains and bob's waits; started
    again, both finish, each with exactly one row, and alice's child of the killed server is gone."""
    alice, bob = add_participant(tmp_path, "alice"), add_participant(tmp_path, "bob")
    server = Server(tmp_path).start()
    try:
        a = upload(server.url, alice, "alices.py", EXAMPLE.read_bytes()).json()["id"]
        b = upload(server.url, bob, "bobs.py", EXAMPLE.read_bytes() + b"\n# bob's\n").json()["id"]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            sub = httpx.get(f"{server.url}/api/submissions/{a}", headers=bearer(alice), timeout=60).json()
            if sub["status"] == "running" and re.search(r"checking|training", sub["log"]):
                break
            time.sleep(0.2)
        assert httpx.get(f"{server.url}/api/submissions/{b}", headers=bearer(bob)).json()["status"] == "queued"
        pid = (
            sqlite3.connect(tmp_path / "harness-serve.sqlite")
            .execute("SELECT pid FROM submissions WHERE id = ?", (a,))
            .fetchone()[0]
        )
        assert pid and Path(f"/proc/{pid}").exists()
        server.kill9()
    finally:
        server.stop()
    for _ in range(600):  # the kernel told the orphaned child to stop
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()
    lb = tmp_path / "leaderboard-tiny.csv"
    assert not lb.exists() or csv_rows(lb, "alices.py") == []  # killed before its run ended

    with Server(tmp_path, port=server.port) as again:
        done_a, done_b = wait_done(again.url, alice, a), wait_done(again.url, bob, b)
    assert done_a["status"] == done_b["status"] == "done", (done_a, done_b)
    assert done_a["attempts"] == 2 and done_b["attempts"] == 1  # alice's resumed; bob's ran once
    assert done_a["log"].count("=== harness serve: attempt") == 2
    assert [r["status"] for r in csv_rows(lb, "alices.py")] == ["ok"]
    assert [r["status"] for r in csv_rows(lb, "bobs.py")] == ["ok"]
