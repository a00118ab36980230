"""``--jobs 1``: the runs one after another in the driver's own process, sharing one copy of the data."""

from __future__ import annotations

from harness.executors import Executor, Job, OnResult
from harness.protocol import RunResult
from harness.sandbox import Sandbox
from harness.train import RunObserver, run_one


class InlineExecutor(Executor):
    def __init__(self, *, train, test, sandbox: Sandbox) -> None:
        self.train, self.test, self.sandbox = train, test, sandbox

    def run(self, jobs: list[Job], observer: RunObserver, on_result: OnResult) -> None:
        for job in jobs:
            try:
                result = run_one(job.spec, submission=job.submission, train=self.train, test=self.test,
                                 run_dir=job.run_dir, sandbox=self.sandbox, observer=observer).result
            except Exception as e:  # noqa: BLE001  (run_one catches run failures; this is its setup)
                result = RunResult.failed(f"the run could not start training: {type(e).__name__}: {e}")
                observer.run_finished(job.spec, result)
            on_result(job, result)
