"""The protocol as data: the task's fixed protocol, the profiles, and the records
that cross module boundaries (run spec, epoch metrics, run result, leaderboard row).

Defaults live here and only here. Every run saves its full :class:`RunSpec` (which embeds
its :class:`Profile`) next to its results, so a row can always be traced to the exact
settings that produced it.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.errors import UsageError
from harness.settings import PLACE, Phase, Precision, RunSettings, Topology
from harness.settings import PROTOCOL_VERSION as PROTOCOL_VERSION  # re-exported
from harness.settings import TOPOLOGIES as TOPOLOGIES  # re-exported

PUBLIC_ARCHS: tuple[str, ...] = ("resnet20", "resnet56")
HIDDEN_ARCHS: tuple[str, ...] = ("vgg16bn",)
PROTOCOL_SEEDS: tuple[int, ...] = (42, 123, 456)

Kind = Literal["baseline", "submission"]
Status = Literal["ok", "failed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OptimizerSettings(_Frozen):
    """SGD with a cosine schedule; the loss module's parameters use the same settings."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: Literal["cosine"] = "cosine"

    def lr_at(self, epoch: int, total_epochs: int) -> float:
        """Cosine annealing stepped once per epoch: ``lr/2 * (1 + cos(pi * epoch / E))``.

        The same function drives the model's optimizer and the loss worker's optimizer.
        """
        return 0.5 * self.lr * (1.0 + math.cos(math.pi * epoch / total_epochs))


class Profile(_Frozen):
    """A named set of protocol settings. ``full`` is the task's protocol exactly."""

    name: str
    description: str
    dataset: Literal["cifar100", "synthetic"]
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    seeds: tuple[int, ...]
    archs: tuple[str, ...]
    train_subset: int | None = Field(default=None, ge=1, description="first N training images")
    test_subset: int | None = Field(default=None, ge=1, description="first N test images")
    eval_batch_size: int = Field(default=1000, ge=1)
    optimizer: OptimizerSettings = OptimizerSettings()
    crop_padding: int = 4
    horizontal_flip: bool = True
    # Loss-worker limits (seconds). The first call includes importing torch in the worker.
    worker_start_timeout_s: float = 120.0
    worker_call_timeout_s: float = 30.0
    # Total seconds the loss worker may spend answering step calls in one run (the full
    # protocol makes 78,200 calls; ordinary losses need well under 1 ms each).
    worker_run_budget_s: float = 3600.0
    # --sandbox auto may fall back to running unsandboxed (loudly) when no sandbox exists.
    allow_unsandboxed_fallback: bool = False
    precision: Precision | Literal["auto"] = Field(
        default="fp32",
        description="default of --precision; auto: bf16 where the device computes it natively (much faster), else fp32",
    )


PROFILES: dict[str, Profile] = {
    "full": Profile(
        name="full",
        description="the task's protocol: CIFAR-100, 200 epochs, seeds 42/123/456, batch 128",
        dataset="cifar100",
        epochs=200,
        batch_size=128,
        seeds=PROTOCOL_SEEDS,
        archs=PUBLIC_ARCHS,
    ),
    "quick": Profile(
        name="quick",
        description="the full protocol shortened to 30 epochs (the cosine schedule over 30): CIFAR-100, seeds "
        "42/123/456, batch 128; for iterating on a GPU before the 200-epoch run; its rows go to "
        "leaderboard-quick.csv, apart from the full protocol's",
        dataset="cifar100",
        epochs=30,
        batch_size=128,
        seeds=PROTOCOL_SEEDS,
        archs=PUBLIC_ARCHS,
    ),
    "smoke": Profile(
        name="smoke",
        description="synthetic CIFAR-format data, 2,000 train / 500 test images, 3 epochs, seed 42, batch 32, lr 0.02",
        dataset="synthetic",
        epochs=3,
        batch_size=32,
        # ResNet-56 barely leaves chance level in ~190 steps at lr 0.1; 0.02 learns within the demo.
        optimizer=OptimizerSettings(lr=0.02),
        seeds=(42,),
        archs=PUBLIC_ARCHS,
        train_subset=2000,
        test_subset=500,
        allow_unsandboxed_fallback=True,
        precision="auto",  # a demo: the fastest setting the machine has (recorded in each row)
    ),
    "tiny": Profile(
        name="tiny",
        description="for tests: synthetic data, 256 train / 128 test images, 1 epoch, resnet20",
        dataset="synthetic",
        epochs=1,
        batch_size=64,
        optimizer=OptimizerSettings(lr=0.02),
        seeds=(42,),
        archs=("resnet20",),
        train_subset=256,
        test_subset=128,
        allow_unsandboxed_fallback=True,
        worker_call_timeout_s=10.0,
    ),
    "selftest": Profile(
        name="selftest",
        description="for harness selftest: the tiny profile over 2 epochs (a checkpoint to resume from)",
        dataset="synthetic",
        epochs=2,
        batch_size=64,
        optimizer=OptimizerSettings(lr=0.02),
        seeds=(42,),
        archs=("resnet20",),
        train_subset=256,
        test_subset=128,
        allow_unsandboxed_fallback=True,
        worker_call_timeout_s=10.0,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


# ---------------------------------------------------------------------------------------------- identity
# What makes two runs the same run and two rows the same entry is defined here, once. Every place that
# decides it (the skip rule, pending-row recovery, attempts, aggregation, run directories, checkpoints,
# and the runs / compare / retire views) goes through these models or the column tuples below; a new
# protocol option that changes what a run computes is a field of RunSettings and nothing else.


class EntryKey(_Frozen):
    """A leaderboard entry: a name and a kind. Its *versions* are the sha256s the name has had. Two
    entries with byte-identical files are still two entries (each is shown as identical to the other);
    a baseline and a submission are never the same entry, whatever their names."""

    kind: Kind
    name: str = Field(description="the entry's name: its file name (``x.py``), or ``--name``")

    def __str__(self) -> str:
        return self.name if self.kind == "submission" else f"{self.name} (baseline)"


class VersionKey(_Frozen):
    """One file version of one entry: its kind, name and sha256. Two entries with byte-identical files
    have two versions: retiring, highlighting or selecting one never touches the other."""

    entry: EntryKey
    sha256: str

    @classmethod
    def of(cls, kind: str, name: str, sha256: str) -> VersionKey:
        """The version of the entry ``(kind, name)`` whose file hashes to ``sha256`` (leaderboard values)."""
        return cls(entry=EntryKey.model_validate({"kind": kind, "name": name}), sha256=sha256)


class SeriesKey(VersionKey):
    """One file version of one entry run with one set of settings: the runs a standing aggregates and
    the skip rule looks through (one per architecture and seed)."""

    settings: RunSettings


class RunKey(SeriesKey):
    """What makes two runs the same run: the series, the architecture and the seed. Attempts of one run
    are numbered; a finished run is not trained again (unless forced)."""

    arch: str
    seed: int

    @property
    def series(self) -> SeriesKey:
        return SeriesKey(entry=self.entry, sha256=self.sha256, settings=self.settings)


ENTRY_COLUMNS: tuple[str, ...] = ("kind", "submission")
"""The leaderboard columns of an :class:`EntryKey` (``submission`` holds its name)."""
SETTINGS_COLUMNS: tuple[str, ...] = tuple(RunSettings.model_fields)
"""The leaderboard columns of :class:`RunSettings` (same names)."""
SERIES_COLUMNS: tuple[str, ...] = ENTRY_COLUMNS + ("submission_sha256",) + SETTINGS_COLUMNS
RUN_COLUMNS: tuple[str, ...] = SERIES_COLUMNS + ("arch", "seed")
"""The columns that say which run a measured row is an attempt of (:class:`RunKey`)."""


def key_values(key: SeriesKey) -> dict[str, object]:
    """``key`` as leaderboard column values (the columns of :data:`SERIES_COLUMNS`, plus arch and seed
    for a :class:`RunKey`)."""
    out: dict[str, object] = {
        "kind": key.entry.kind,
        "submission": key.entry.name,
        "submission_sha256": key.sha256,
        **key.settings.model_dump(),
    }
    if isinstance(key, RunKey):
        out.update(arch=key.arch, seed=key.seed)
    return out


class ArchSource(_Frozen):
    """Where a hidden architecture is defined: the module file (absolute path on the driver's
    machine) and its sha256. A process that has not loaded it (a ``--jobs`` child, a Ray task)
    loads that file, or the bytes the executor sends with the task, only if the sha256 matches."""

    path: Annotated[str, PLACE]
    sha256: str


class RunSpec(_Frozen):
    """Everything that determines one (architecture, seed) training run."""

    submission: str = Field(description="the entry's name: the file name, or --name")
    submission_sha256: str
    kind: Kind = "submission"
    submission_path: Annotated[str, PLACE] = Field(
        default="",
        description="where the file was evaluated from, as the leaderboard "
        "records it (the identity check of same-named files); not part of the run's "
        "identity",
    )
    profile: Profile
    phase: Phase = "public"
    topology: Topology = "shared"
    arch: str
    seed: int
    device: Annotated[str, PLACE]
    sandbox: Annotated[str, PLACE] = "none"
    precision: Precision = "fp32"
    channels_last: Annotated[bool, PLACE] = True
    compile: bool = Field(default=False, description="the model's forward pass through torch.compile")
    deterministic: bool = Field(
        default=False, description="torch.use_deterministic_algorithms and cuDNN determinism (cudnn.benchmark off)"
    )
    protocol_version: int = Field(
        default=PROTOCOL_VERSION, description="the trainer build's compatibility number (harness.settings)"
    )
    arch_source: ArchSource | None = Field(
        default=None, description="the file defining a hidden architecture (None: a built-in one)"
    )
    fused: Annotated[bool, PLACE] = Field(
        default=False,
        description="trained as one model with the other seeds of its architecture (harness.training.fused): an "
        "exact reorganisation up to float rounding, like the device; recorded, not part of the run's identity",
    )

    @property
    def dtype(self) -> str:
        """The dtype of parameters, data and the worker's numbers; bf16 keeps float32 parameters and
        runs the forward pass under bfloat16 autocast."""
        return {"fp32": "float32", "tf32": "float32", "bf16": "float32", "fp64": "float64"}[self.precision]

    @property
    def entry(self) -> EntryKey:
        return EntryKey(kind=self.kind, name=self.submission)

    @property
    def settings(self) -> RunSettings:
        """Its :class:`RunSettings`: the spec's fields of the same names (the profile by its name)."""
        values = {name: getattr(self, name) for name in RunSettings.model_fields}
        return RunSettings.model_validate({**values, "profile": self.profile.name})

    @property
    def key(self) -> RunKey:
        """The run's identity (:class:`RunKey`)."""
        return RunKey(
            entry=self.entry, sha256=self.submission_sha256, settings=self.settings, arch=self.arch, seed=self.seed
        )


class EpochMetrics(_Frozen):
    """One line of a run's ``metrics.jsonl``. ``epoch`` is 0-indexed, as in ``forward``."""

    epoch: int
    lr: float
    train_fine_loss: float
    train_coarse_loss: float
    train_combined_loss: float
    weight_fine: float = Field(description="mean dL/d fine_loss over the epoch's steps")
    weight_coarse: float = Field(description="mean dL/d coarse_loss over the epoch's steps")
    test_fine_loss: float
    test_coarse_loss: float
    test_fine_acc: float = Field(description="percent")
    test_coarse_acc: float = Field(description="percent")
    seconds: float


class RunResult(_Frozen):
    """The outcome of one run; ``status='failed'`` carries a reason and no accuracies."""

    status: Status
    epochs_done: int
    best_fine_acc: float | None = None
    best_epoch: int | None = None
    final_fine_acc: float | None = None
    best_coarse_acc: float | None = None
    wall_seconds: float  # ok: training time of every epoch (a resumed run: all); failed: the process
    reason: str | None = None
    device: str | None = None  # the name of the device it trained on, as the leaderboard records it
    float32_math: str | None = None  # what its float32 convolutions and matmuls computed in (device.float32_math)

    @model_validator(mode="after")
    def _consistent(self) -> RunResult:
        if self.status == "ok" and self.best_fine_acc is None:
            raise ValueError("an ok result needs best_fine_acc")
        if self.status == "failed" and not self.reason:
            raise ValueError("a failed result needs a reason")
        return self

    @classmethod
    def failed(cls, reason: str, *, epochs_done: int = 0, wall_seconds: float = 0.0) -> RunResult:
        return cls(status="failed", epochs_done=epochs_done, wall_seconds=wall_seconds, reason=reason)

    @classmethod
    def from_epochs(cls, history: list[EpochMetrics], wall_seconds: float) -> RunResult:
        best = max(history, key=lambda m: m.test_fine_acc)  # first epoch wins ties
        return cls(
            status="ok",
            epochs_done=len(history),
            best_fine_acc=best.test_fine_acc,
            best_epoch=best.epoch,
            final_fine_acc=history[-1].test_fine_acc,
            best_coarse_acc=max(m.test_coarse_acc for m in history),
            wall_seconds=wall_seconds,
        )


SCHEMA_VERSION = 6
Origin = Literal["measured", "published"]


class LeaderboardRow(_Frozen):
    """One line of ``leaderboard.csv``: one run measured here, or one published result.

    The field order is the column order; ``schema_version`` changes whenever it does, and
    ``harness.results.MIGRATIONS`` gains the step from the previous version.
    Version 2 added ``compile`` and ``deterministic``; version 3 ``origin``, ``source``, ``topology``
    and ``attempt``; version 4 ``submission_path``, and attempts counted per entry (kind and name) as
    well as per file version (:data:`RUN_COLUMNS`); version 5 ``float32_math``; version 6
    ``protocol_version`` (:data:`harness.settings.PROTOCOL_VERSION`).
    Accuracies are percentages; ``best_epoch`` is 0-indexed. A failed run has empty accuracy
    columns and ``status=failed`` (its reason is in ``runs/<run_id>/failure.txt``). ``attempt``
    numbers the rows of one run (:class:`RunKey`: same entry, file version, settings, architecture and
    seed) in the order they were appended: a retried seed is visible in the file. ``submission_path``
    is where the file was evaluated from (relative to the leaderboard's directory when it lies under
    it): a file of the same name from another place is another author's, never a version of this entry.
    A ``published`` row was reported elsewhere (``source`` says where) and is never measured here:
    what its source does not say is empty, and it stays outside every score, rank and test.
    """

    schema_version: int = SCHEMA_VERSION
    origin: Origin = "measured"
    source: str = Field(default="", description="where a published row was reported; empty when measured")
    finished_at: str | None = Field(default=None, description="UTC, ISO 8601")
    submission: str
    submission_sha256: str | None = None
    submission_path: str = Field(default="", description="where the file was evaluated from; empty when unknown")
    kind: Kind
    profile: str
    phase: Phase
    topology: Topology = "shared"
    arch: str
    seed: int
    attempt: int | None = None  # set when the row is appended
    epochs: int
    best_fine_acc: float | None
    best_epoch: int | None = None
    final_fine_acc: float | None = None
    best_coarse_acc: float | None = None
    wall_seconds: float | None = None
    device: str | None = None
    precision: str | None = None
    float32_math: str | None = Field(
        default=None,
        description="what float32 convolutions and matmuls computed in: ieee, tf32-conv (PyTorch's CUDA default: "
        "TF32 convolutions, IEEE matmuls) or tf32; recorded like the device, not part of the run's identity "
        "(the precision setting is); empty when unknown",
    )
    channels_last: bool | None = None
    compile: bool | None = None
    deterministic: bool | None = None
    protocol_version: int | None = Field(
        default=None, description="the trainer build's compatibility number; empty for a published row"
    )
    torch_version: str | None = None
    harness_version: str | None = None
    harness_commit: str | None = None
    sandbox: str | None = None
    run_id: str | None = Field(default=None, description="the run's directory, relative to the runs dir")
    status: Status

    @model_validator(mode="after")
    def _complete(self) -> LeaderboardRow:
        if self.origin == "published":
            if not self.source:
                raise ValueError("a published row needs its source")
            return self
        needed = (
            "finished_at",
            "submission_sha256",
            "wall_seconds",
            "device",
            "precision",
            "channels_last",
            "compile",
            "deterministic",
            "protocol_version",
            "torch_version",
            "harness_version",
            "harness_commit",
            "sandbox",
            "run_id",
        )
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a measured row needs {', '.join(missing)}")
        if self.source:
            raise ValueError("a measured row has no source")
        return self

    @property
    def key(self) -> RunKey:
        """The run this measured row is an attempt of."""
        return RunKey(
            entry=EntryKey(kind=self.kind, name=self.submission),
            sha256=self.submission_sha256 or "",
            settings=RunSettings.from_cells({name: getattr(self, name) for name in SETTINGS_COLUMNS}),
            arch=self.arch,
            seed=self.seed,
        )


LEADERBOARD_COLUMNS: tuple[str, ...] = tuple(LeaderboardRow.model_fields)
if not set(RUN_COLUMNS) <= set(LEADERBOARD_COLUMNS):
    raise RuntimeError("every identity column must be a leaderboard column")
