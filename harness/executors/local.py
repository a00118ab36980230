"""``--jobs N``: up to N runs at once, each in its own process.

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
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from harness.executors import STOP_GRACE_S, Executor, Job, OnResult, RunObserver
from harness.executors.events import INTERRUPTED, Finished, Interrupted, deliver, execute, placed_here
from harness.protocol import RunResult, RunSpec
from harness.rundir import RunDir
from harness.training.device import device_for_slot, threads_per_run


def _child(
    spec_json: str,
    run_dir: str,
    submission: str,
    data_dir: str | None,
    sandbox_name: str,
    threads: int,
    conn: Connection,
) -> None:
    job = Job(RunSpec.model_validate_json(spec_json), RunDir(Path(run_dir)), Path(submission))
    try:
        conn.send(placed_here(0))
        execute(
            job,
            sandbox=sandbox_name,
            send=conn.send,
            key=0,
            data_dir=Path(data_dir) if data_dir else None,
            threads=threads,
            handle_signals=True,
        )
    except KeyboardInterrupt:  # stopped by the driver: the run's cleanup has run
        conn.send(Interrupted(0))
    finally:
        conn.close()


@dataclass
class _Child:
    process: BaseProcess
    conn: Connection
    job: Job
    slot: int
    started: float
    result: RunResult | None = None
    interrupted: bool = False
    eof: bool = False

    def pump(self, observer: RunObserver) -> None:
        """Handle every event that has arrived; notes the end of the pipe."""
        while not self.eof and self.conn.poll():
            try:
                event = self.conn.recv()
            except (EOFError, OSError, ValueError, TypeError, AttributeError, ImportError):  # closed, or torn
                self.eof = True
                return
            if isinstance(event, Interrupted):
                self.interrupted = True
            elif isinstance(event, Finished):
                self.result = event.result
            else:
                deliver(event, self.job.spec, observer)


class LocalExecutor(Executor):
    def __init__(self, *, jobs: int, data_dir: Path | None, sandbox_name: str) -> None:
        self.n, self.data_dir, self.sandbox_name = jobs, data_dir, sandbox_name

    def run(self, jobs: list[Job], observer: RunObserver, on_result: OnResult) -> None:
        ctx = mp.get_context("spawn")
        waiting = list(jobs)
        running: list[_Child] = []
        free_slots = list(range(self.n))
        threads = threads_per_run(min(self.n, len(jobs)), jobs[0].spec.device.split(":")[0]) if jobs else 0

        def start(job: Job) -> None:
            slot = free_slots.pop(0)
            job = Job(
                job.spec.model_copy(update={"device": device_for_slot(job.spec.device, slot)}),
                job.run_dir,
                job.submission,
            )
            receive, send = ctx.Pipe(duplex=False)
            p = ctx.Process(
                target=_child,
                args=(
                    job.spec.model_dump_json(),
                    str(job.run_dir.path),
                    str(job.submission),
                    str(self.data_dir) if self.data_dir else None,
                    self.sandbox_name,
                    threads,
                    send,
                ),
            )
            p.start()
            send.close()  # the child holds the only write end: its exit closes the pipe
            running.append(_Child(p, receive, job, slot, time.perf_counter()))

        def end(child: _Child) -> None:
            running.remove(child)
            child.process.join(5)
            if child.process.is_alive():  # reported its result but does not exit
                child.process.kill()
                child.process.join(5)
            child.conn.close()
            free_slots.append(child.slot)
            result = child.result
            if result is None:
                reason = (
                    INTERRUPTED
                    if child.interrupted
                    else (f"the run's process died without a result (exit code {child.process.exitcode})")
                )
                result = RunResult.failed(reason, wall_seconds=time.perf_counter() - child.started)
            self.finish(child.job, result, observer, on_result)

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
                    elif child.result is not None:
                        end(child)
        except BaseException:
            _stop([c.process for c in running])
            for child in list(running):  # results that arrived before the stop are kept
                child.pump(observer)
                if child.result is not None:
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
