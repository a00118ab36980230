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
inside the run is not a lost task: :func:`harness.train.run_one` turns it into a failed result.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
from pathlib import Path

from harness.executors import Executor, Job, OnResult
from harness.executors.events import dispatch, execute
from harness.protocol import RunResult, RunSpec
from harness.provenance import harness_commit, harness_version
from harness.train import RunObserver

POLL_S = 0.2
STOP_GRACE_S = 20.0


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


class _Events:
    """A Ray actor collecting the tasks' progress events for the driver to drain."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def put(self, event: tuple) -> None:
        self.events.append(event)

    def drain(self) -> list[tuple]:
        events, self.events = self.events, []
        return events


def _task(spec_json: str, run_dir: str, submission_name: str, submission_bytes: bytes, data, sandbox_name: str,
          threads: int, events, key: str, build: tuple[str, str]) -> str:
    """One run, in a Ray worker process; returns its :class:`RunResult` as JSON."""
    spec = RunSpec.model_validate_json(spec_json)
    here = (harness_version(), harness_commit())
    if here != build:
        return RunResult(status="failed", epochs_done=0, wall_seconds=0.0, reason=(
            f"this Ray node runs harness {here[0]} ({here[1]}), the driver {build[0]} ({build[1]}): "
            "install the same harness on every node")).model_dump_json()
    submission = Path(submission_name)
    if not (submission.is_file() and hashlib.sha256(submission.read_bytes()).hexdigest() == spec.submission_sha256):
        # not on a shared filesystem: the driver's copy travels with the task
        submission = Path(tempfile.mkdtemp(prefix="harness-submission-")) / "submission.py"
        submission.write_bytes(submission_bytes)
    result = execute(spec, run_dir=Path(run_dir), submission=submission, sandbox_name=sandbox_name,
                     send=lambda event: events.put.remote(event), key=key, data=data, threads=threads,
                     handle_signals=False)  # Ray delivers cancellation as KeyboardInterrupt itself
    return result.model_dump_json()


class RayExecutor(Executor):
    def __init__(self, *, address: str | None, jobs: int | None, gpus_per_run: float, cpus_per_run: float | None,
                 retries: int, data, sandbox_name: str, log=print) -> None:
        self.address, self.jobs, self.gpus_per_run = address, jobs, gpus_per_run
        self.cpus_per_run, self.retries, self.data = cpus_per_run, retries, data
        self.sandbox_name, self.log = sandbox_name, log

    def _connect(self) -> bool:
        """Join the cluster or start a local Ray; True if this call started Ray."""
        import ray

        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network calls from the driver
        common = dict(include_dashboard=False, log_to_driver=False, logging_level="warning")
        if self.address:
            ray.init(address=self.address, **common)
        else:
            ray.init(**common)
        res = ray.cluster_resources()
        self.log(f"Ray: {'cluster ' + self.address if self.address else 'a local Ray started for this evaluation'}; "
                 f"{res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs")
        return True

    def _resources(self, n_jobs: int) -> tuple[float, float, int]:
        """(CPUs per task, GPUs per task, torch threads per task)."""
        import ray

        cpus = self.cpus_per_run
        if cpus is None:
            if self.gpus_per_run > 0:
                cpus = 1.0
            else:  # CPU runs share the cluster's cores between the runs in flight
                in_flight = min(n_jobs, self.jobs or n_jobs)
                cpus = max(1.0, float(int(ray.cluster_resources().get("CPU", 1) // max(1, in_flight))))
        threads = 0 if self.gpus_per_run > 0 else max(1, int(cpus))
        return cpus, self.gpus_per_run, threads

    def run(self, jobs: list[Job], observer: RunObserver, on_result: OnResult) -> None:
        import ray
        from ray.exceptions import RayError, RayTaskError

        started_here = self._connect()
        pending: dict = {}  # ObjectRef -> (job, attempt, key)
        try:
            events = ray.remote(num_cpus=0)(_Events).remote()
            data_ref = ray.put(self.data)
            cpus, gpus, threads = self._resources(len(jobs))
            task = ray.remote(_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
            build = (harness_version(), harness_commit())
            waiting = [(job, 0) for job in jobs]
            live: dict[str, Job] = {}
            counter = itertools.count()
            limit = self.jobs or len(jobs)

            def submit(job: Job, attempt: int) -> None:
                key = f"{next(counter)}:{attempt}"
                live[key] = job
                ref = task.remote(job.spec.model_dump_json(), str(job.run_dir.resolve()), str(job.submission.resolve()),
                                  job.submission.read_bytes(), data_ref, self.sandbox_name, threads, events, key, build)
                pending[ref] = (job, attempt, key)

            def drain() -> None:
                for event in ray.get(events.drain.remote()):
                    job = live.get(event[1])
                    if job is not None and event[0] not in ("finished", "interrupted"):
                        dispatch(event, job.spec, observer)

            while waiting or pending:
                while waiting and len(pending) < limit:
                    submit(*waiting.pop(0))
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                drain()
                for ref in ready:
                    job, attempt, key = pending.pop(ref)
                    live.pop(key, None)
                    try:
                        result = RunResult.model_validate_json(ray.get(ref))
                    except RayTaskError as e:  # an exception escaped the task: not a lost task
                        result = RunResult(status="failed", epochs_done=0, wall_seconds=0.0,
                                           reason=f"the Ray task raised {type(e.cause).__name__}: {e.cause}")
                    except RayError as e:  # the task was lost: worker or node died, result lost
                        reason = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
                        if attempt < self.retries:
                            observer.run_retrying(job.spec, attempt + 1, self.retries, reason)
                            submit(job, attempt + 1)
                            continue
                        result = RunResult(status="failed", epochs_done=0, wall_seconds=0.0, reason=(
                            f"the Ray task was lost {attempt + 1} time(s), the last time with {reason}; "
                            f"gave up after {self.retries} retr{'y' if self.retries == 1 else 'ies'} "
                            "(--ray-retries)"))
                    observer.run_finished(job.spec, result)
                    on_result(job, result)
        except KeyboardInterrupt:
            for ref in pending:  # KeyboardInterrupt inside each task: its cleanup runs
                ray.cancel(ref)
            if pending:
                ray.wait(list(pending), num_returns=len(pending), timeout=STOP_GRACE_S)
            raise
        finally:
            if started_here:
                ray.shutdown()
