"""``--jobs N``: up to N runs at once, each in its own process.

One small ResNet cannot fill a large GPU, so several runs share it; on a machine with several
GPUs the runs are spread over them (slot i uses ``cuda:(i mod count)``). Each child loads the
data, starts its own loss worker in the sandbox and reports through a queue
(:mod:`harness.executors.events`). On the CPU each child gets ``cores / N`` threads.

A child that dies without reporting (killed, out of memory) becomes a failed run with that
reason; the others go on. When the driver stops (Ctrl-C included) every child is asked to stop
(SIGTERM, which unwinds through the run's cleanup: worker and sandbox removed, checkpoint kept)
and is killed only if it has not exited after ``STOP_GRACE_S``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import time
from pathlib import Path

from harness.executors import Executor, Job, OnResult
from harness.executors.events import dispatch, execute
from harness.protocol import RunResult, RunSpec
from harness.train import RunObserver

STOP_GRACE_S = 20.0


def _child(key: int, spec_json: str, run_dir: str, submission: str, data_dir: str | None, sandbox_name: str,
           threads: int, q) -> None:
    spec = RunSpec.model_validate_json(spec_json)
    try:
        execute(spec, run_dir=Path(run_dir), submission=Path(submission), sandbox_name=sandbox_name, send=q.put,
                key=key, data_dir=Path(data_dir) if data_dir else None, threads=threads)
    except KeyboardInterrupt:  # stopped by the driver: the run's cleanup has run
        q.put(("interrupted", key))


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


class LocalExecutor(Executor):
    def __init__(self, *, jobs: int, data_dir: Path | None, sandbox_name: str, poll_s: float = 0.2) -> None:
        self.n, self.data_dir, self.sandbox_name, self.poll_s = jobs, data_dir, sandbox_name, poll_s

    def run(self, jobs: list[Job], observer: RunObserver, on_result: OnResult) -> None:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        waiting = list(enumerate(jobs))
        running: dict[int, tuple[mp.Process, Job, float]] = {}
        threads = child_threads(self.n, jobs[0].spec.device.split(":")[0]) if jobs else 0

        def finish(key: int, result: RunResult) -> None:
            p, job, _ = running.pop(key)
            p.join(30)
            observer.run_finished(job.spec, result)
            on_result(job, result)

        try:
            while waiting or running:
                while waiting and len(running) < self.n:
                    key, job = waiting.pop(0)
                    spec = job.spec.model_copy(update={"device": device_for_slot(job.spec.device, key)})
                    job = Job(spec, job.run_dir, job.submission)
                    p = ctx.Process(target=_child, args=(
                        key, spec.model_dump_json(), str(job.run_dir), str(job.submission),
                        str(self.data_dir) if self.data_dir else None, self.sandbox_name, threads, q))
                    p.start()
                    running[key] = (p, job, time.perf_counter())
                try:
                    event = q.get(timeout=self.poll_s)
                except queue_mod.Empty:
                    for key, (p, _, started) in list(running.items()):
                        if not p.is_alive() and q.empty():
                            reason = f"the run's process died without a result (exit code {p.exitcode})"
                            finish(key, RunResult(status="failed", epochs_done=0, reason=reason,
                                                  wall_seconds=time.perf_counter() - started))
                    continue
                key = event[1]
                if key not in running:
                    continue
                result = dispatch(event, running[key][1].spec, observer)
                if result is not None:
                    finish(key, result)
        finally:
            _stop(p for p, _, _ in running.values())


def _stop(procs) -> None:
    """Ask every child still alive to stop, wait for their cleanup, kill what is left."""
    procs = [p for p in procs if p.is_alive()]
    for p in procs:
        p.terminate()  # SIGTERM: the child unwinds through its cleanup
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5)
