"""``--jobs 1``: the runs (or fused seeds) one after another in the driver's own process, sharing one copy of
the data."""

from __future__ import annotations

from harness.events import RunObserver
from harness.executors import Executor, Job, OnResult, units
from harness.executors.events import Keyed, Send, deliver, execute_unit
from harness.isolation.sandbox import Sandbox
from harness.protocol import RunSpec


def _sender(specs: dict[object, RunSpec], observer: RunObserver) -> Send:
    """The events of the runs ``specs`` (by key) replayed on ``observer`` as they come."""

    def send(message: Keyed) -> None:
        deliver(message, specs[message.key], observer)

    return send


class InlineExecutor(Executor):
    def __init__(self, *, data, sandbox: Sandbox) -> None:
        self.data, self.sandbox = data, sandbox

    def run(self, jobs: list[Job], observer: RunObserver, on_result: OnResult) -> None:
        for unit in units(jobs):
            specs: dict[object, RunSpec] = {i: job.spec for i, job in enumerate(unit)}
            send = _sender(specs, observer)
            results = execute_unit(unit, sandbox=self.sandbox, send=send, keys=list(specs), data=self.data)
            for job, result in zip(unit, results):
                self.finish(job, result, observer, on_result)
