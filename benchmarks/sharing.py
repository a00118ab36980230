"""How evaluations started together on one machine share it: N ``harness evaluate`` processes
(the smoke profile, resnet20, one seed each, in directories of their own) started at once, against
one alone. Prints the aggregate throughput of N as a fraction of one process's (goal: >= 0.8), and,
with ``--without-sharing``, the same with the thread sharing switched off (every trainer takes
every CPU, ``HARNESS_THREADS``, and OpenMP threads spin: the behaviour before sharing existed).

    python benchmarks/sharing.py --counts 1 2 4 6 [--without-sharing]

Run it with nothing else running: two torch processes on two cores slow each other many times over.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUBMISSION = Path(__file__).resolve().parent.parent / "submissions" / "example_loss.py"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_group(n: int, sharing: bool) -> float:
    """Wall seconds for ``n`` evaluations started at once."""
    exe = shutil.which("harness") or sys.executable
    cmd = ([exe] if exe.endswith("harness") else [exe, "-m", "harness.cli"]) + [
        "evaluate",
        str(SUBMISSION),
        "--profile",
        "smoke",
        "--arch",
        "resnet20",
        "--sandbox",
        "none",
    ]
    procs = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        for i in range(n):
            cwd = Path(root) / f"eval{i}"
            cwd.mkdir()
            env = dict(os.environ)
            if not sharing:
                env["HARNESS_THREADS"] = str(os.cpu_count() or 1)  # every trainer takes every CPU
                env["OMP_WAIT_POLICY"] = "ACTIVE"
            procs.append(
                subprocess.Popen(
                    cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
                )
            )
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"an evaluation failed ({p.returncode}):\n{err.decode()[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 6])
    parser.add_argument("--without-sharing", action="store_true", help="also measure each N without sharing")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs; smoke profile, resnet20, 1 seed per evaluation")
    alone = run_group(1, True)
    print(f"{'N':>3} {'setting':>16} {'wall s':>8} {'throughput vs one alone':>24}")
    print(f"{1:>3} {'sharing':>16} {alone:8.1f} {1.0:24.2f}")
    for n in args.counts:
        for sharing in (True, False) if args.without_sharing else (True,):
            if n == 1 and sharing:
                continue
            wall = run_group(n, sharing)
            print(
                f"{n:>3} {'sharing' if sharing else 'without sharing':>16} {wall:8.1f} {n * alone / wall:24.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
