"""``harness selftest --device cuda|cpu``: the training path on a device, checked end to end through
the real command line, each figure printed against what it must be; the exit code is 1 when any
differs.

Every check runs ``harness`` commands (``python -m harness.cli``) in a scratch directory, as a user
would, on small synthetic data (the ``selftest`` profile: two epochs of four steps, so that there is
a checkpoint to resume from; ``tiny`` where one epoch is enough):

- an evaluation (deterministic): its row is ok, names the device and the float32 arithmetic;
- resuming on the device: the same evaluation killed (SIGKILL) after its first epoch and run again
  resumes from the checkpoint and ends with exactly the uninterrupted run's metrics;
- on CUDA, resuming on the CPU from the GPU's checkpoint;
- the Gramian (MGDA) and after-update (FAMO) inputs through their baselines, under ``--compile`` (on
  CUDA two seeds each, fused and compiled; on a CPU one seed, with the aot_eager backend unless
  ``--inductor``: inductor compiles ResNet-20 for a minute on a small CPU);
- fused seeds against separate runs sharing the device in two processes, in float64 (a GPU's float32
  convolutions are TF32), equal to 1e-6 (the test split's losses are summed in float32, hence not
  1e-12);
- ``harness bench``, with two runs at once (its JSON report kept as ``bench/bench.json``).

This module imports neither torch nor the trainer: the commands it runs do.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ExitCode, UsageError

SOURCE = Path(__file__).resolve().parents[2]  # the checkout: submissions/ and baselines/


@dataclass(frozen=True)
class Figure:
    """One measured figure of a check and what it must be."""

    check: str
    what: str
    got: str
    expected: str
    ok: bool


@dataclass
class Context:
    device: str
    work: Path
    env: dict[str, str]
    common: list[str]  # --device, --sandbox
    float32: str  # what float32_math a row must say on this device
    timeout: float

    def harness(self, *args: object, cwd: Path, merge: bool = True) -> subprocess.CompletedProcess:
        """``harness ARGS`` run to the end in ``cwd``; standard output and error together (``merge``)."""
        cwd.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            [sys.executable, "-m", "harness.cli", *map(str, args)],
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=self.timeout,
        )
        _keep_output(cwd, args, r.stdout + (r.stderr or ""))
        return r

    def killed_after_first_epoch(self, *args: object, cwd: Path) -> str:
        """``harness ARGS`` killed with SIGKILL (with its loss worker) once its first epoch of two
        has ended (its checkpoint written); returns what it printed."""
        cwd.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", *map(str, args)],
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        out = []
        deadline = time.monotonic() + self.timeout
        try:
            for line in proc.stdout or ():
                out.append(line)
                if "epoch 1/2" in line or time.monotonic() > deadline:
                    break
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _keep_output(cwd, args, "".join(out) + "(killed with SIGKILL)\n")
        return "".join(out)


def _keep_output(cwd: Path, args: tuple[object, ...], text: str) -> None:
    """Append a command and what it printed to ``cwd/output.txt``, kept with the check's other files."""
    with open(cwd / "output.txt", "a", encoding="utf-8") as f:
        f.write(f"$ harness {' '.join(map(str, args))}\n{text}\n")


def _rows(cwd: Path, profile: str) -> list[dict]:
    import csv

    path = cwd / ("leaderboard.csv" if profile == "full" else f"leaderboard-{profile}.csv")
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _metrics(cwd: Path, run_id: str) -> list[dict]:
    lines = (cwd / "runs" / run_id / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def _said(out: str, text: str) -> bool:
    return text in " ".join(out.split())


def _row_figures(check: str, ctx: Context, rows: list[dict], n: int, out: str) -> list[Figure]:
    statuses = ",".join(r["status"] for r in rows) or "none"
    figures = [
        Figure(
            check, "rows", f"{len(rows)} ({statuses})", f"{n} (ok)", len(rows) == n and statuses == ",".join(["ok"] * n)
        )
    ]
    if rows:
        device = rows[0]["device"]
        want = "cpu" if ctx.device == "cpu" else "cuda:<GPU name>"
        figures.append(
            Figure(
                check, "device", device, want, device == "cpu" if ctx.device == "cpu" else device.startswith("cuda:")
            )
        )
        math_ = ",".join(sorted({r["float32_math"] for r in rows}))
        figures.append(Figure(check, "float32 arithmetic", math_, ctx.float32, math_ == ctx.float32))
    if len(rows) != n or statuses != ",".join(["ok"] * n):
        figures.append(Figure(check, "output", " ".join(out.split())[-300:], "(no error)", False))
    return figures


EXAMPLE = SOURCE / "submissions" / "example_loss.py"
RUN = ("--profile", "selftest", "--seed", "1", "--deterministic")


def check_evaluation(ctx: Context) -> list[Figure]:
    cwd = ctx.work / "evaluation"
    r = ctx.harness("evaluate", EXAMPLE, *RUN, *ctx.common, cwd=cwd)
    rows = _rows(cwd, "selftest")
    figures = _row_figures("evaluation", ctx, rows, 1, r.stdout)
    if rows and rows[0]["status"] == "ok":
        acc = float(rows[0]["best_fine_acc"])
        figures.append(Figure("evaluation", "best fine acc %", f"{acc:.2f}", "0..100", 0 <= acc <= 100))
    return figures


def check_resume(ctx: Context) -> list[Figure]:
    cwd = ctx.work / "resume"
    ctx.killed_after_first_epoch("evaluate", EXAMPLE, *RUN, *ctx.common, cwd=cwd)
    r = ctx.harness("evaluate", EXAMPLE, *RUN, *ctx.common, cwd=cwd)
    figures = [Figure("resume", "resumed", str(_said(r.stdout, "resuming after epoch 1/2")), "True",
                      _said(r.stdout, "resuming after epoch 1/2"))]  # fmt: skip
    rows, reference = _rows(cwd, "selftest"), _rows(ctx.work / "evaluation", "selftest")
    figures += _row_figures("resume", ctx, rows, 1, r.stdout)
    if rows and reference and rows[0]["status"] == reference[0]["status"] == "ok":
        same = _metrics(cwd, rows[0]["run_id"]) == _metrics(ctx.work / "evaluation", reference[0]["run_id"])
        figures.append(Figure("resume", "metrics vs the uninterrupted run", "identical" if same else "different",
                              "identical", same))  # fmt: skip
    return figures


def check_resume_on_cpu(ctx: Context) -> list[Figure]:
    cwd = ctx.work / "resume-on-cpu"
    ctx.killed_after_first_epoch("evaluate", EXAMPLE, *RUN, *ctx.common, cwd=cwd)
    r = ctx.harness("evaluate", EXAMPLE, *RUN, "--device", "cpu", *ctx.common[2:], cwd=cwd)
    resumed = _said(r.stdout, "resuming after epoch 1/2")
    figures = [Figure("resume on the CPU", "resumed from the GPU's checkpoint", str(resumed), "True", resumed)]
    rows, reference = _rows(cwd, "selftest"), _rows(ctx.work / "evaluation", "selftest")
    ok = len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["device"] == "cpu"
    figures.append(Figure("resume on the CPU", "row", f"{len(rows)} {rows[0]['status'] if rows else ''} "
                          f"on {rows[0]['device'] if rows else '-'}", "1 ok on cpu", ok))  # fmt: skip
    if ok and reference:
        first = _metrics(cwd, rows[0]["run_id"])[0] == _metrics(ctx.work / "evaluation", reference[0]["run_id"])[0]
        figures.append(
            Figure("resume on the CPU", "epoch 1 (trained on the GPU) vs the GPU run", str(first), "True", first)
        )
    return figures


def check_inputs(ctx: Context) -> list[Figure]:
    """The Gramian (MGDA: two backward passes) and after-update (FAMO: a no-gradient pass) inputs, under
    ``--compile``: every variant of the compiled forward in one run (a fallback to eager would fail it)."""
    cwd = ctx.work / "inputs"
    seeds = ["--seed", "1"] + (["--seed", "2"] if ctx.device == "cuda" else [])  # on CUDA: fused, compiled
    r = ctx.harness("baselines", "--only", "mgda", "--only", "famo", "--profile", "tiny", *seeds, "--compile",
                    *ctx.common, cwd=cwd)  # fmt: skip
    rows = _rows(cwd, "tiny")
    backend = ctx.env.get("HARNESS_COMPILE_BACKEND", "inductor")
    name = f"Gramian (mgda) and after-update (famo) inputs, --compile ({backend})"
    figures = _row_figures(name, ctx, rows, len(seeds), r.stdout)
    compiled = ",".join(r["compile"].lower() for r in rows)
    want = ",".join(["true"] * len(seeds))
    figures.append(Figure(name, "compile recorded", compiled, want, compiled == want))
    if ctx.device == "cuda":
        fused = _said(r.stdout, "4 runs trained fused")
        figures.append(Figure(name, "fused and compiled", str(fused), "True", fused))
    return figures


def check_fused(ctx: Context) -> list[Figure]:
    name = "fused seeds vs separate runs sharing the device"
    # float64: a GPU's float32 convolutions are TF32; on a CPU it keeps the accuracies far from a rounding tie,
    # so that the rows are those of separate runs (tests/test_fused.py reads the kept files)
    precision, tolerance = "fp64", 1e-6
    args = (
        "evaluate",
        EXAMPLE,
        "--profile",
        "tiny",
        "--seed",
        "1",
        "--seed",
        "2",
        "--precision",
        precision,
        *ctx.common,
    )
    fused = ctx.harness(*args, "--fuse", cwd=ctx.work / "fused")
    separate = ctx.harness(*args, "--no-fuse", "--jobs", "2", cwd=ctx.work / "separate")
    figures = [
        Figure(name, "fused", str(_said(fused.stdout, "2 runs trained fused")), "True",
               _said(fused.stdout, "2 runs trained fused")),
        Figure(name, "separate runs at once", str(_said(separate.stdout, "running up to 2 runs at once")), "True",
               _said(separate.stdout, "running up to 2 runs at once")),
    ]  # fmt: skip
    a, b = _rows(ctx.work / "fused", "tiny"), _rows(ctx.work / "separate", "tiny")
    figures += _row_figures(name, ctx, a, 2, fused.stdout) + _row_figures(name, ctx, b, 2, separate.stdout)
    if len(a) == len(b) == 2 and all(r["status"] == "ok" for r in a + b):
        worst = 0.0
        for ra, rb in zip(sorted(a, key=lambda r: r["seed"]), sorted(b, key=lambda r: r["seed"])):
            for ma, mb in zip(
                _metrics(ctx.work / "fused", ra["run_id"]), _metrics(ctx.work / "separate", rb["run_id"])
            ):
                for key in ("train_fine_loss", "train_coarse_loss", "weight_fine", "weight_coarse", "test_fine_loss"):
                    worst = max(worst, abs(ma[key] - mb[key]) / max(1e-12, abs(mb[key])))
        figures.append(Figure(name, f"largest relative difference ({precision})", f"{worst:.1e}", f"<= {tolerance:g}",
                              worst <= tolerance))  # fmt: skip
    return figures


def check_bench(ctx: Context) -> list[Figure]:
    gpu = ctx.device == "cuda"
    archs = ["--arch", "resnet20"] + (["--arch", "vgg16bn"] if gpu else [])
    sizes = ["--steps", "20", "--batch", "128", "--jobs", "1"] if gpu else ["--steps", "2", "--batch", "32"]
    r = ctx.harness("bench", *archs, *sizes, "--jobs", "2", "--rounds", "1", "--calls", "50", "--eval-images",
                    "1000", "--device", ctx.device, "--sandbox", ctx.common[3], "--json", cwd=ctx.work / "bench",
                    merge=False)  # fmt: skip
    try:
        report = json.loads(r.stdout)
    except ValueError:
        return [Figure("harness bench", "report", " ".join((r.stdout + r.stderr).split())[-300:], "JSON", False)]
    (ctx.work / "bench" / "bench.json").write_text(r.stdout)  # kept (tests/test_cli.py reads it)
    figures = []
    for arch in report["archs"]:
        harness_, bare = arch["harness_img_s"], arch["bare_img_s"]
        fine = math.isfinite(harness_) and harness_ > 0 and 0 < harness_ <= 1.5 * bare
        figures.append(Figure("harness bench", f"{arch['arch']} img/s (harness / bare)",
                              f"{harness_:.0f} / {bare:.0f}", "> 0, harness <= 1.5 x bare", fine))  # fmt: skip
    for jobs in report.get("jobs", []):
        figures.append(Figure("harness bench", f"{jobs['arch']} with {jobs['jobs']} runs at once, img/s in all",
                              f"{jobs['aggregate_img_s']:.0f}", "> 0", jobs["aggregate_img_s"] > 0))  # fmt: skip
    return figures


def checks(device: str) -> list[tuple[str, Callable[[Context], list[Figure]]]]:
    out: list[tuple[str, Callable[[Context], list[Figure]]]] = [
        ("evaluation", check_evaluation),
        ("resume", check_resume),
    ]
    if device == "cuda":
        out.append(("resume on the CPU", check_resume_on_cpu))
    out += [("inputs and --compile", check_inputs), ("fused", check_fused), ("bench", check_bench)]
    return out


def _float32_expected(device: str) -> str:
    if device != "cuda":
        return "ieee"
    import torch

    if not torch.cuda.is_available():
        raise UsageError("--device cuda was given but torch sees no CUDA device; use --device cpu")
    return "tf32-conv" if torch.cuda.get_device_capability() >= (8, 0) else "ieee"


def run_selftest(
    device: str, *, sandbox: str, inductor: bool, keep: Path | None, say: Callable[[str], None], timeout: float = 600
) -> int:
    """Run every check on ``device``, printing each figure against its expectation; the exit code is
    1 when any differs. The scratch directory is removed unless ``keep`` names one or a check failed."""
    if not EXAMPLE.exists():
        raise UsageError(f"harness selftest runs from a source checkout ({EXAMPLE} is missing)")
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="harness-selftest-"))
    work.mkdir(parents=True, exist_ok=True)
    # a fixed thread count: a CPU run's float sums, and so the bit-for-bit resume, depend on it
    env = dict(os.environ, HARNESS_THREADS=os.environ.get("HARNESS_THREADS") or str(os.cpu_count() or 1), COLUMNS="200")
    if device == "cpu" and not inductor:
        env["HARNESS_COMPILE_BACKEND"] = "aot_eager"
    ctx = Context(device, work, env, ["--device", device, "--sandbox", sandbox], _float32_expected(device), timeout)
    say(f"harness selftest on {device}, sandbox {sandbox}, in {work}")
    start, figures = time.perf_counter(), []
    for name, check in checks(device):
        t = time.perf_counter()
        try:
            got = check(ctx)
        except Exception as e:  # noqa: BLE001  (a check that breaks is a difference, and the others go on)
            got = [Figure(name, "ran", f"{type(e).__name__}: {e}", "no error", False)]
        for f in got:
            say(f"{'ok  ' if f.ok else 'DIFF'}  {f.check}: {f.what}: {f.got} (expected {f.expected})")
        say(f"      {name}: {time.perf_counter() - t:.1f} s")
        figures += got
    bad = [f for f in figures if not f.ok]
    total = time.perf_counter() - start
    if bad:
        say(f"{len(bad)} of {len(figures)} figures differ from their expectation ({total:.0f} s); files kept in {work}")
        return ExitCode.RUN_FAILED
    say(f"all {len(figures)} figures as expected ({total:.0f} s)")
    if keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return ExitCode.OK
