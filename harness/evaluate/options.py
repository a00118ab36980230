"""The options of an evaluation (``harness evaluate``, ``harness baselines``, :func:`harness.api.evaluate`):
one validated model, whoever builds it. It imports nothing heavy (no torch, no pandas), so that the
command line can quote its defaults in ``--help`` without starting the training stack."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from harness.errors import UsageError
from harness.evaluate.names import SOURCE_BASELINES
from harness.protocol import Kind, Phase, Precision, Profile, Topology

ExecutorName = Literal["local", "ray"]


class EvaluateOptions(BaseModel):
    """What ``harness evaluate`` and ``harness baselines`` are asked to do. The defaults are the
    command line's; a combination that cannot work raises :class:`UsageError` on construction."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    profile: Profile
    phase: Phase = "public"
    topology: Topology = "shared"  # the topology study's network topologies; the task's is shared
    archs: tuple[str, ...] = ()  # empty: the profile's (plus the hidden ones in the final phase)
    seeds: tuple[int, ...] = ()  # empty: the profile's
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data_dir: Path | None = None
    runs_dir: Path = Path("runs")
    leaderboard: Path | None = None  # None: leaderboard.default_path(profile)
    sandbox: str = "auto"
    kind: Kind = "submission"
    name: str | None = None  # the entry's name; None: the file's name (one file only)
    baselines_dir: Path = SOURCE_BASELINES  # the baselines, whose names no submission may take
    hidden_dir: Path | None = None
    force: bool = False
    precision: Precision | None = None  # None: the profile's default
    jobs: int | None = (
        None  # units at once; None: on a GPU as many as its memory holds, 1 on a CPU; Ray: as many as fit
    )
    compile: bool = False
    deterministic: bool = False
    fuse: bool | None = None  # the seeds of a run trained as one model (harness.training.fused); None: on CUDA
    executor: ExecutorName = "local"
    ray_address: str | None = None
    gpus_per_run: float | None = None  # None: 1 when the device is CUDA, else 0
    cpus_per_run: float | None = None  # None: 1 with a GPU, else the CPUs shared between the runs in flight
    ray_retries: int = 2

    @model_validator(mode="after")
    def _usable(self) -> EvaluateOptions:
        if self.jobs is not None and self.jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {self.jobs}")
        ray_only = {
            "--ray-address": self.ray_address,
            "--gpus-per-run": self.gpus_per_run,
            "--cpus-per-run": self.cpus_per_run,
        }
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given and self.executor != "ray":
            raise UsageError(f"{', '.join(given)} only apply with --executor ray")
        for flag, value in (("--gpus-per-run", self.gpus_per_run), ("--cpus-per-run", self.cpus_per_run)):
            if value is not None and value < 0:
                raise UsageError(f"{flag} must be 0 or more, got {value}")
        if self.ray_retries < 0:
            raise UsageError(f"--ray-retries must be 0 or more, got {self.ray_retries}")
        if self.fuse and self.executor == "ray":
            raise UsageError("--fuse runs with the local executor; Ray runs each seed as its own task")
        return self

    @property
    def leaderboard_path(self) -> Path:
        from harness.results.store import default_path

        return self.leaderboard or default_path(self.profile.name)
