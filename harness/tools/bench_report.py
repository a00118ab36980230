"""The figures ``harness bench`` measures (:mod:`harness.tools.bench`), as data: per architecture, per
sandbox round trip, per ``--jobs`` count, and the whole report (``--json`` prints :meth:`BenchReport.to_dict`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class ArchBench:
    arch: str
    batch_size: int
    steps: int
    rounds: int
    harness_img_s: float
    bare_img_s: float
    reference_img_s: float
    eval_s_per_epoch: float
    eval_images: int
    harness_over_bare: float = field(init=False)
    harness_over_reference: float = field(init=False)

    def __post_init__(self) -> None:
        self.harness_over_bare = self.harness_img_s / self.bare_img_s
        self.harness_over_reference = self.harness_img_s / self.reference_img_s


@dataclass
class RoundTrip:
    sandbox: str
    calls: int
    median_us: float
    p99_us: float


@dataclass
class JobsThroughput:
    """N concurrent harness training loops on one device (``--jobs N``), summed."""

    arch: str
    jobs: int
    aggregate_img_s: float
    per_job_img_s: float


@dataclass
class BenchReport:
    device: str
    precision: str
    channels_last: bool
    sandbox: str  # the one the harness step used
    threads: int
    archs: list[ArchBench]
    roundtrips: list[RoundTrip]
    seconds: float
    jobs: list[JobsThroughput] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)
