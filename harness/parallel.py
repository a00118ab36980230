"""``--jobs N``: up to N (architecture, seed) runs at once, each in its own process.

One small ResNet cannot fill a large GPU, so several runs share it; on a machine with several
GPUs the runs are spread over them (slot i uses ``cuda:(i mod count)``). Each child process loads
the data, starts its own loss worker in the sandbox and calls :func:`harness.train.run_one`;
it reports progress and its result to the parent through a queue. Only the parent writes the
leaderboard. On the CPU each child gets ``cores / N`` threads.

A child that dies without reporting (killed, out of memory) becomes a failed run with that
reason; the other runs go on. Children are terminated when the parent stops (Ctrl-C included).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.protocol import EpochMetrics, RunResult, RunSpec
from harness.train import RunObserver

STEP_BATCH = 10  # steps per progress message


@dataclass(frozen=True)
class Job:
    spec: RunSpec
    run_dir: Path


class _QueueObserver(RunObserver):
    """Runs in the child: forwards progress to the parent."""

    def __init__(self, q, key: int) -> None:
        self.q, self.key, self.pending = q, key, 0

    def run_started(self, spec: RunSpec, total_steps: int) -> None:
        self.q.put(("started", self.key, total_steps))

    def run_resumed(self, spec: RunSpec, epochs_done: int, steps_done: int, notes: list[str]) -> None:
        self.q.put(("resumed", self.key, epochs_done, steps_done, notes))

    def step_done(self) -> None:
        self.pending += 1
        if self.pending >= STEP_BATCH:
            self.q.put(("steps", self.key, self.pending))
            self.pending = 0

    def epoch_done(self, spec: RunSpec, metrics: EpochMetrics, best_fine_acc: float) -> None:
        if self.pending:
            self.q.put(("steps", self.key, self.pending))
            self.pending = 0
        self.q.put(("epoch", self.key, metrics.model_dump_json(), best_fine_acc))


def _child(key: int, spec_json: str, run_dir: str, submission: str, data_dir: str | None, sandbox_name: str,
           threads: int, q) -> None:
    import torch

    from harness.evaluate import load_data
    from harness.sandbox import get_sandbox
    from harness.train import run_one

    if threads:
        torch.set_num_threads(threads)
    spec = RunSpec.model_validate_json(spec_json)
    try:
        train, test = load_data(spec.profile, Path(data_dir) if data_dir else None)
        outcome = run_one(spec, submission=Path(submission), train=train, test=test, run_dir=Path(run_dir),
                          sandbox=get_sandbox(sandbox_name), observer=_QueueObserver(q, key))
        result = outcome.result
    except Exception as e:  # noqa: BLE001  (run_one catches run failures; this is setup)
        result = RunResult(status="failed", epochs_done=0, wall_seconds=0.0,
                           reason=f"the run's process could not start training: {type(e).__name__}: {e}")
    q.put(("finished", key, result.model_dump_json()))


def child_threads(jobs: int, device_type: str) -> int:
    if device_type != "cpu":
        return 0
    return max(1, (os.cpu_count() or 1) // jobs)


def device_for_slot(device: str, slot: int) -> str:
    """Spread runs over the visible GPUs; the CPU stays the CPU."""
    if not device.startswith("cuda"):
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{slot % count}" if count > 1 else device


def run_parallel(jobs: list[Job], *, n: int, submission: Path, data_dir: Path | None, sandbox_name: str,
                 observer, on_result: Callable[[Job, RunResult], None], poll_s: float = 0.2) -> None:
    """Run ``jobs`` with at most ``n`` at a time; ``on_result`` is called in the parent as each ends."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    waiting = list(enumerate(jobs))
    running: dict[int, tuple[mp.Process, Job, float]] = {}
    threads = child_threads(n, jobs[0].spec.device.split(":")[0]) if jobs else 0
    try:
        while waiting or running:
            while waiting and len(running) < n:
                key, job = waiting.pop(0)
                spec = job.spec.model_copy(update={"device": device_for_slot(job.spec.device, key)})
                job = Job(spec, job.run_dir)
                p = ctx.Process(target=_child, args=(key, spec.model_dump_json(), str(job.run_dir), str(submission),
                                                     str(data_dir) if data_dir else None, sandbox_name, threads, q),
                                daemon=False)
                p.start()
                running[key] = (p, job, time.perf_counter())
            try:
                event = q.get(timeout=poll_s)
            except queue_mod.Empty:
                for key, (p, job, started) in list(running.items()):
                    if not p.is_alive() and q.empty():
                        running.pop(key)
                        reason = f"the run's process died without a result (exit code {p.exitcode})"
                        result = RunResult(status="failed", epochs_done=0, reason=reason,
                                           wall_seconds=time.perf_counter() - started)
                        observer.run_finished(job.spec, result)
                        on_result(job, result)
                continue
            kind, key = event[0], event[1]
            if key not in running:
                continue
            job = running[key][1]
            if kind == "started":
                observer.run_started(job.spec, event[2])
            elif kind == "resumed":
                observer.run_resumed(job.spec, event[2], event[3], event[4])
            elif kind == "steps":
                observer.steps_done_for(job.spec, event[2])
            elif kind == "epoch":
                observer.epoch_done(job.spec, EpochMetrics.model_validate_json(event[2]), event[3])
            elif kind == "finished":
                p, job, _ = running.pop(key)
                p.join(30)
                result = RunResult.model_validate_json(event[2])
                observer.run_finished(job.spec, result)
                on_result(job, result)
    finally:
        for p, _, _ in running.values():
            if p.is_alive():
                p.terminate()
        for p, _, _ in running.values():
            p.join(10)
