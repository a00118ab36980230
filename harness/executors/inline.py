"""``--jobs 1``: the runs one after another in the driver's own process, sharing one copy of the data."""

from __future__ import annotations

from harness.executors import Executor, Job, OnResult, RunObserver
from harness.executors.events import Event, Send, deliver, execute
from harness.isolation.sandbox import Sandbox
from harness.protocol import RunSpec


def _sender(spec: RunSpec, observer: RunObserver) -> Send:
    """The run ``spec``'s events replayed on ``observer`` as they come."""

    def send(event: Event) -> None:
        deliver(event, spec, observer)

    return send


class InlineExecutor(Executor):
    def __init__(self, *, data, sandbox: Sandbox) -> None:
        self.data, self.sandbox = data, sandbox

    def run(self, jobs: list[Job], observer: RunObserver, on_result: OnResult) -> None:
        for job in jobs:
            result = execute(job, sandbox=self.sandbox, send=_sender(job.spec, observer), key=0, data=self.data)
            self.finish(job, result, observer, on_result)
