"""``--executor ray``: each run is a Ray task with a CPU and (fractional) GPU requirement.

Without ``--ray-address`` a local Ray is started on the fly and shut down at the end; with it
the driver joins that cluster. The driver puts the data in Ray's object store once and sends the
submission file's bytes with each task, so a node needs neither; it needs the same harness
version (checked: a task on a node with another version fails with that reason) and, for the
sandbox, bubblewrap or the Docker image. Run files (metrics, logs, checkpoints) are written at
the run directory's absolute path on the node: put ``--runs-dir`` on a filesystem every node
sees for the per-run files and for resuming on another node. Only the driver writes the
leaderboard.

Ray's own retries are off: a task that is lost (its worker process or node died, its result
object lost) is resubmitted by the driver up to ``retries`` times, visibly, and the new attempt
resumes from the run's last checkpoint; after that the run fails with the reason. An error
inside the run is not a lost task: :func:`harness.training.trainer.run_one` turns it into a failed result.
"""

from __future__ import annotations

import functools
import itertools
import os
import tempfile
from pathlib import Path
from typing import Any

import ray

from harness.errors import UsageError
from harness.events import RunObserver, RunRetrying
from harness.executors import STOP_GRACE_S, Executor, Job, OnResult
from harness.executors.events import Keyed, deliver, execute, placed_here
from harness.protocol import RunResult, RunSpec
from harness.results.rundir import RunDir
from harness.training.data import Split
from harness.training.device import determinism_env
from harness.util.fileio import sha256_file
from harness.util.provenance import harness_commit, harness_version

POLL_S = 0.2


def task_options(jobs: list[Job], cpus: float, gpus: float) -> dict:
    """Ray options of the run tasks: resources, no Ray retries, and the environment a run needs
    before CUDA starts (a task on a cluster joined with ``--ray-address`` does not inherit the
    driver's environment, so it travels in the task's ``runtime_env``)."""
    env: dict[str, str] = {}
    for job in jobs:
        env.update(determinism_env(job.spec.deterministic))
    options: dict = dict(num_cpus=cpus, num_gpus=gpus, max_retries=0)
    if env:
        options["runtime_env"] = {"env_vars": env}
    return options


class _Events:
    """A Ray actor collecting the tasks' progress events (:class:`Keyed`) for the driver to drain."""

    def __init__(self) -> None:
        self.events: list[Keyed] = []

    def put(self, event: Keyed) -> None:
        self.events.append(event)

    def flushed(self) -> None:
        """Returns once every event put before this call is here (an actor runs its calls in order)."""

    def drain(self) -> list[Keyed]:
        events, self.events = self.events, []
        return events


@functools.lru_cache(maxsize=1)
def build_id() -> str:
    """The harness version and commit (without the working tree's ``-dirty`` flag, which an edit
    during the evaluation would flip): a task refuses to run on a node whose build differs."""
    return f"{harness_version()} ({harness_commit().removesuffix('-dirty')})"


def _task(
    spec_json: str,
    run_dir: str,
    submission_name: str,
    submission_bytes: bytes,
    data,
    sandbox_name: str,
    threads: int,
    events,
    key: str,
    build: str,
    arch_code: bytes | None = None,
) -> str:
    """One run, in a Ray worker process; returns its :class:`RunResult` as JSON. ``arch_code``: the
    bytes of the file defining a hidden architecture (loaded only if its sha256 is the spec's)."""
    spec = RunSpec.model_validate_json(spec_json)
    if build_id() != build:
        return RunResult.failed(
            f"this Ray node runs harness {build_id()}, the driver {build}: install the same harness on every node"
        ).model_dump_json()
    submission, scratch = Path(submission_name), None
    if not (submission.is_file() and sha256_file(submission) == spec.submission_sha256):
        # not on a shared filesystem: the driver's copy travels with the task
        scratch = tempfile.TemporaryDirectory(prefix="harness-submission-")
        submission = Path(scratch.name) / "submission.py"
        submission.write_bytes(submission_bytes)
    try:
        send = events.put.remote
        send(placed_here(key))
        # Ray delivers cancellation as KeyboardInterrupt itself: no signal handlers of our own
        result = execute(
            Job(spec, RunDir(Path(run_dir)), submission),
            sandbox=sandbox_name,
            send=send,
            key=key,
            data=data,
            threads=threads,
            arch_code=arch_code,
        )
        ray.get(events.flushed.remote())  # every event is at the actor before the result is
    finally:
        if scratch is not None:
            scratch.cleanup()
    return result.model_dump_json()


class RayExecutor(Executor):
    def __init__(
        self,
        *,
        address: str | None,
        jobs: int | None,
        gpus_per_run: float,
        cpus_per_run: float | None,
        retries: int,
        data,
        sandbox_name: str,
        log=print,
    ) -> None:
        self.address, self.jobs, self.gpus_per_run = address, jobs, gpus_per_run
        self.cpus_per_run, self.retries, self.data = cpus_per_run, retries, data
        self.sandbox_name, self.log = sandbox_name, log

    def _connect(self) -> bool:
        """Join the cluster or start a local Ray; True if this call started Ray."""
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network calls from the driver
        common: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level="warning")
        if self.address:
            ray.init(address=self.address, **common)
        else:
            ray.init(**common)
        res = ray.cluster_resources()
        self.log(
            f"Ray: {'cluster ' + self.address if self.address else 'a local Ray started for this evaluation'}; "
            f"{res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"
        )
        return True

    def _resources(self, n_jobs: int) -> tuple[float, float, int]:
        """(CPUs per task, GPUs per task, torch threads per task); raises ``UsageError`` for a
        request no node of the cluster can meet (Ray would queue such a task forever)."""
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        node_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
        node_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
        cpus = self.cpus_per_run
        if cpus is None:
            if self.gpus_per_run > 0:
                cpus = 1.0
            else:  # CPU runs share a node's cores between the runs in flight
                in_flight = min(n_jobs, self.jobs or n_jobs)
                cpus = max(1.0, float(int(ray.cluster_resources().get("CPU", 1) // max(1, in_flight))))
                cpus = min(cpus, max(1.0, node_cpus))
        if cpus > node_cpus:
            raise UsageError(
                f"each run asks for {cpus:g} CPUs but the largest Ray node has {node_cpus:g}; lower --cpus-per-run"
            )
        if self.gpus_per_run > node_gpus:
            raise UsageError(
                f"each run asks for {self.gpus_per_run:g} GPUs but the largest Ray node has "
                f"{node_gpus:g}; use --gpus-per-run 0 --device cpu, or a cluster with GPUs"
            )
        threads = 0 if self.gpus_per_run > 0 else max(1, int(cpus))
        return cpus, self.gpus_per_run, threads

    def run(self, jobs: list[Job], observer: RunObserver, on_result: OnResult) -> None:
        started_here = self._connect()
        flight = None
        try:
            cpus, gpus, threads = self._resources(len(jobs))
            flight = _Flight(
                self, jobs, observer, on_result, ray.remote(_task).options(**task_options(jobs, cpus, gpus)), threads
            )
            flight.run()
        except BaseException:
            if flight is not None:
                flight.stop()
            raise
        finally:
            if started_here:
                ray.shutdown()


class _Flight:
    """The Ray tasks of one evaluation: submitted up to the limit, their progress drained from the
    events actor, each finished (or retried when lost) in the driver."""

    def __init__(
        self, executor: RayExecutor, jobs: list[Job], observer: RunObserver, on_result: OnResult, task, threads: int
    ) -> None:
        self.ex, self.observer, self.on_result, self.task, self.threads = executor, observer, on_result, task, threads
        self.waiting = [(job, 0) for job in jobs]
        self.limit = executor.jobs or len(jobs)
        self.pending: dict = {}  # ObjectRef -> (job, attempt, key)
        self.live: dict[str, Job] = {}  # event key -> job, while its task may still send
        self.counter = itertools.count()
        self.events: Any = ray.remote(num_cpus=0)(_Events).remote()
        self.data_ref = ray.put(tuple(_compact(split) for split in executor.data))

    def run(self) -> None:
        while self.waiting or self.pending:
            while self.waiting and len(self.pending) < self.limit:
                self.submit(*self.waiting.pop(0))
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
            self.drain()
            for ref in ready:
                self.finish(ref)

    def submit(self, job: Job, attempt: int) -> None:
        key = f"{next(self.counter)}:{attempt}"
        self.live[key] = job
        ref = self.task.remote(
            job.spec.model_dump_json(),
            str(job.run_dir.path.resolve()),
            str(job.submission.resolve()),
            job.submission.read_bytes(),
            self.data_ref,
            self.ex.sandbox_name,
            self.threads,
            self.events,
            key,
            build_id(),
            Path(job.spec.arch_source.path).read_bytes() if job.spec.arch_source else None,
        )
        self.pending[ref] = (job, attempt, key)

    def drain(self) -> None:
        from ray.exceptions import RayError

        try:
            batch = ray.get(self.events.drain.remote())
        except RayError:  # progress only; results come with the tasks
            return
        for message in batch:
            job = self.live.get(message.key) if isinstance(message, Keyed) and isinstance(message.key, str) else None
            if job is not None:  # deliver leaves a run's end to finish()
                deliver(message, job.spec, self.observer)

    def finish(self, ref) -> None:
        from ray.exceptions import RayError, RayTaskError

        job, attempt, key = self.pending.pop(ref)
        self.live.pop(key, None)
        retries = self.ex.retries
        try:
            result = RunResult.model_validate_json(ray.get(ref))
        except RayTaskError as e:  # an exception escaped the task: not a lost task
            result = RunResult.failed(f"the Ray task raised {type(e.cause).__name__}: {e.cause}")
        except RayError as e:  # the task was lost: worker or node died, result lost
            reason = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
            if attempt < retries:
                self.observer.on_event(job.spec, RunRetrying(attempt + 1, retries, reason))
                self.submit(job, attempt + 1)
                return
            gave_up = f"{retries} retr{'y' if retries == 1 else 'ies'}"
            result = RunResult.failed(
                f"the Ray task was lost {attempt + 1} time(s), the last time with "
                f"{reason}; gave up after {gave_up} (--ray-retries)"
            )
        self.ex.finish(job, result, self.observer, self.on_result)

    def stop(self) -> None:
        """Cancel every task (KeyboardInterrupt inside each: its cleanup runs); results that arrive
        within the grace period are still recorded."""
        from ray.exceptions import RayError

        for ref in self.pending:
            ray.cancel(ref)
        if not self.pending:
            return
        done, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=STOP_GRACE_S)
        for ref in done:
            job, _, _ = self.pending[ref]
            try:
                result = RunResult.model_validate_json(ray.get(ref))
            except RayError:
                continue
            self.ex.finish(job, result, self.observer, self.on_result)


def _compact(split: Split) -> Split:
    """A copy that owns only its own rows: a ``head()`` view would ship the whole dataset."""
    if split.images.untyped_storage().nbytes() == split.images.nbytes:
        return split
    return Split(split.images.clone(), split.fine.clone(), split.coarse.clone())
