"""``none``: the worker as a plain child process. Isolates the submission from the
trainer's memory (it cannot touch the model, the data or the scorer), but not from the
machine: it can read files, use the network and spawn processes. For trusted code only.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from harness.isolation.sandbox import PipeProcess, Sandbox, register_sandbox, spawn_pipes, stage, worker_argv

SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "CUDA_VISIBLE_DEVICES": ""}


def worker_environment() -> dict[str, str]:
    """A minimal environment: no host variables but what Python needs to start."""
    env = dict(SINGLE_THREAD_ENV, PATH=os.defpath, LANG="C.UTF-8")
    if "LD_LIBRARY_PATH" in os.environ:
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return env


@register_sandbox
class NoSandbox(Sandbox):
    name = "none"
    warning = (
        "--sandbox none runs the submission as a plain process: it cannot touch the model or "
        "the scorer, but it can read your files and use the network. Use it for trusted code only."
    )

    def spawn(self, submission: Path) -> tuple[PipeProcess, str]:
        staged = stage(submission)  # neutral names: the worker's command line shows no path of the run
        try:
            proc = spawn_pipes(
                worker_argv(sys.executable, str(staged / "worker.py")),
                env=worker_environment(),
                cleanup=lambda: shutil.rmtree(staged, ignore_errors=True),
            )
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return proc, str(staged / "submission.py")
