"""``harness selftest``: the acceptance check of the training path on a device. CI runs it on the CPU
through the real command line (so it never rots); it reports each figure against its expectation and
exits non-zero on any difference; its help starts without torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.tools import selftest


@pytest.mark.slow
def test_selftest_on_the_cpu_passes_through_the_cli(selftest_run):
    r, work = selftest_run
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "DIFF" not in out and "figures as expected" in out
    for check in (
        "evaluation",
        "resume",
        "Gramian (mgda) and after-update (famo) inputs, --compile (aot_eager)",
        "fused seeds vs separate runs sharing the device",
        "harness bench",
    ):
        assert f"ok    {check}:" in out, check
    assert "resume: metrics vs the uninterrupted run: identical (expected identical)" in out
    assert (work / "resume" / "leaderboard-selftest.csv").exists()  # --keep keeps the files


def test_a_figure_that_differs_fails_the_selftest_and_keeps_its_files(tmp_path, monkeypatch):
    def fine(ctx):
        return [selftest.Figure("fine", "a", "1", "1", True)]

    def differs(ctx):
        return [selftest.Figure("differs", "rows", "0", "1 (ok)", False)]

    def breaks(ctx):
        raise RuntimeError("the check itself broke")

    monkeypatch.setattr(selftest, "checks", lambda device: [("fine", fine), ("differs", differs), ("breaks", breaks)])
    said: list[str] = []
    code = selftest.run_selftest("cpu", sandbox="none", inductor=False, keep=None, say=said.append)
    assert code == 1
    text = "\n".join(said)
    assert "ok    fine: a: 1 (expected 1)" in text
    assert "DIFF  differs: rows: 0 (expected 1 (ok))" in text
    assert "DIFF  breaks: ran: RuntimeError: the check itself broke (expected no error)" in text
    assert "2 of 3 figures differ from their expectation" in text
    kept = Path(text.split("files kept in ")[-1].strip())
    assert kept.is_dir()
    shutil.rmtree(kept)
    monkeypatch.setattr(selftest, "checks", lambda device: [("fine", fine)])
    said.clear()
    assert selftest.run_selftest("cpu", sandbox="none", inductor=False, keep=None, say=said.append) == 0
    assert "all 1 figures as expected" in said[-1]


def test_selftest_help_starts_without_torch():
    probe = (
        "import sys\nfrom harness.cli.commands import main\n"
        "try:\n    main(['selftest', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--device {cpu,cuda}" in r.stdout and r.stdout.strip().endswith("False")
