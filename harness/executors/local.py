"""``--jobs N``: up to N units at once (a run, or the fused seeds of one: :func:`harness.executors.units`),
each in its own process.

One small ResNet cannot fill a large GPU, so several runs share it; on a machine with several
GPUs the runs are spread over them (a run takes a free slot i and uses ``cuda:(i mod count)``).
Each child loads the data, starts its own loss worker in the sandbox and reports through its own
pipe (:mod:`harness.executors.events`); a pipe per child means a child killed mid-message cannot
block or corrupt the others' reports. On the CPU each child gets ``cores / N`` threads.

A child that dies without reporting (killed, out of memory) is noticed at once through its
process sentinel and becomes a failed run with its exit code; the others go on. When the driver
stops (Ctrl-C included) every child is asked to stop (SIGTERM, which unwinds through the run's
cleanup: worker and sandbox removed, checkpoint kept) and killed only if it has not exited after
``STOP_GRACE_S``; results that had already arrived are still recorded.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from harness.events import RunFinished, RunInterrupted, RunObserver
from harness.executors import STOP_GRACE_S, Executor, Job, OnResult, units
from harness.executors.events import INTERRUPTED, Keyed, deliver, execute_unit, placed_here
from harness.protocol import RunResult, RunSpec
from harness.results.rundir import RunDir
from harness.training.device import device_for_slot, threads_per_run


def _child(
    specs_json: list[str],
    run_dirs: list[str],
    submission: str,
    data_dir: str | None,
    sandbox_name: str,
    threads: int,
    conn: Connection,
) -> None:
    """One unit (a run, or fused seeds) in this process; its jobs' events go under their index."""
    jobs = [
        Job(RunSpec.model_validate_json(j), RunDir(Path(d)), Path(submission)) for j, d in zip(specs_json, run_dirs)
    ]
    keys: list[object] = list(range(len(jobs)))
    try:
        for key in keys:
            conn.send(placed_here(key))
        execute_unit(
            jobs,
            sandbox=sandbox_name,
            send=conn.send,
            keys=keys,
            data_dir=Path(data_dir) if data_dir else None,
            threads=threads,
            handle_signals=True,
        )
    except KeyboardInterrupt:  # stopped by the driver: the runs' cleanup has run
        conn.send(Keyed(0, RunInterrupted()))
    finally:
        conn.close()


@dataclass
class _Child:
    process: BaseProcess
    conn: Connection
    jobs: list[Job]
    slot: int
    started: float
    results: dict[int, RunResult] = field(default_factory=dict)
    interrupted: bool = False
    eof: bool = False

    def pump(self, observer: RunObserver) -> None:
        """Handle every event that has arrived; notes the end of the pipe."""
        while not self.eof and self.conn.poll():
            try:
                message = self.conn.recv()
            except (EOFError, OSError, ValueError, TypeError, AttributeError, ImportError):  # closed, or torn
                self.eof = True
                return
            if not isinstance(message, Keyed) or not isinstance(message.key, int):
                continue
            if not 0 <= message.key < len(self.jobs):
                continue
            match message.event:
                case RunInterrupted():
                    self.interrupted = True
                case RunFinished(result):
                    self.results[message.key] = result
                case _:
                    deliver(message, self.jobs[message.key].spec, observer)

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.jobs)


class LocalExecutor(Executor):
    def __init__(self, *, jobs: int, data_dir: Path | None, sandbox_name: str) -> None:
        self.n, self.data_dir, self.sandbox_name = jobs, data_dir, sandbox_name

    def run(self, jobs: list[Job], observer: RunObserver, on_result: OnResult) -> None:
        ctx = mp.get_context("spawn")
        waiting = units(jobs)
        running: list[_Child] = []
        free_slots = list(range(self.n))
        threads = threads_per_run(min(self.n, len(waiting)), jobs[0].spec.device.split(":")[0]) if jobs else 0

        def start(unit: list[Job]) -> None:
            slot = free_slots.pop(0)
            device = device_for_slot(unit[0].spec.device, slot)
            unit = [Job(job.spec.model_copy(update={"device": device}), job.run_dir, job.submission) for job in unit]
            receive, send = ctx.Pipe(duplex=False)
            p = ctx.Process(
                target=_child,
                args=(
                    [job.spec.model_dump_json() for job in unit],
                    [str(job.run_dir.path) for job in unit],
                    str(unit[0].submission),
                    str(self.data_dir) if self.data_dir else None,
                    self.sandbox_name,
                    threads,
                    send,
                ),
            )
            p.start()
            send.close()  # the child holds the only write end: its exit closes the pipe
            running.append(_Child(p, receive, unit, slot, time.perf_counter()))

        def end(child: _Child) -> None:
            running.remove(child)
            child.process.join(5)
            if child.process.is_alive():  # reported its results but does not exit
                child.process.kill()
                child.process.join(5)
            child.conn.close()
            free_slots.append(child.slot)
            for i, job in enumerate(child.jobs):
                result = child.results.get(i)
                if result is None:
                    reason = (
                        INTERRUPTED
                        if child.interrupted
                        else (f"the run's process died without a result (exit code {child.process.exitcode})")
                    )
                    result = RunResult.failed(reason, wall_seconds=time.perf_counter() - child.started)
                self.finish(job, result, observer, on_result)

        try:
            while waiting or running:
                while waiting and free_slots:
                    start(waiting.pop(0))
                ready = set(
                    wait([c.conn for c in running if not c.eof] + [c.process.sentinel for c in running], timeout=1.0)
                )
                for child in list(running):
                    if child.conn in ready:
                        child.pump(observer)
                    if child.process.sentinel in ready:
                        child.pump(observer)  # what it sent before it exited
                        end(child)
                    elif child.done:
                        end(child)
        except BaseException:
            _stop([c.process for c in running])
            for child in list(running):  # results that arrived before the stop are kept
                child.pump(observer)
                if child.done:
                    end(child)
            raise


def _stop(procs: list) -> None:
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
