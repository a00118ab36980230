"""Leaderboard aggregates: per-architecture mean, sample std and n over seeds, the score, the
rank, and the difference from ``equal_weighting`` with a paired test over seeds.

Input is the leaderboard as read by :func:`harness.leaderboard.read_rows`: one row per run measured
here, and published rows, which are only ever shown apart (:func:`reference_standings`).
An *entry* is one submission file version run with one set of protocol options:
``(kind, submission, submission_sha256, precision + compile + deterministic + topology)``. Per
entry and architecture, each seed counts once, by its latest attempt: if that attempt is ``ok``
its accuracy counts; if it failed, the seed counts as failed (an earlier ok attempt does not
stand in for it: retrying until a seed passes must not pay). An entry is *complete* when, on
every architecture of the phase, every seed of the protocol (the profile's seeds) has an ok
latest attempt and no seed's latest attempt failed. Runs of seeds outside the protocol are not
counted when the profile is known. Only complete entries get a score (the
geometric mean over the architectures of the per-architecture means) and a rank; the others are
shown with what is missing or failed.

Significance: seeds fix the initialisation and the data order, so an entry's run with seed s
and ``equal_weighting``'s run with seed s are a matched pair. The difference from equal
weighting is the mean of the per-seed differences over the seeds both have (paired seeds only,
so a seed one of them lacks cannot move it), and the test is a two-sided paired t-test over the
same pairs (df = n - 1). With the protocol's n = 3 it has 2 degrees of
freedom: only a large difference of consistent sign reaches p < 0.05, and a difference
without a marker is *not* evidence that the methods are equal. It assumes the per-seed
differences are roughly normal, which three values cannot check. No test is run with fewer
than 2 pairs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


import pandas as pd
from scipy import stats

from harness.protocol import HIDDEN_ARCHS, PUBLIC_ARCHS, Phase

REFERENCE_BASELINE = "equal_weighting.py"
DEFAULT_SETTINGS = "fp32"


def settings_label(precision: object, compile: object, deterministic: object, topology: object = "shared") -> str:
    """``fp32``, ``bf16+compile``, ``fp32+deterministic``, ``fp32 independent``...: the protocol
    options of a row (the topology when it is not the task card's shared one)."""
    truthy = lambda v: str(v).strip().lower() in ("true", "1")  # noqa: E731
    return (str(precision) + ("+compile" if truthy(compile) else "") + ("+deterministic" if truthy(deterministic) else "")
            + ("" if topology == "shared" else f" {topology}"))
ALPHA = 0.05
TEST_NAME = "paired t-test over seeds, two-sided"


@dataclass(frozen=True)
class ArchStats:
    """One entry on one architecture. Accuracies in percent."""

    n: int
    failed: int
    mean: float | None
    std: float | None  # sample std (ddof = 1); None when n < 2
    seeds: dict[int, float] = field(default_factory=dict)
    run_ids: dict[int, str] = field(default_factory=dict)  # seed -> the counted run's directory
    missing: tuple[int, ...] = ()  # protocol seeds without any attempt
    failed_seeds: tuple[int, ...] = ()  # seeds whose latest attempt failed
    retried: tuple[int, ...] = ()  # seeds with more than one attempt (row): shown, so retries are visible
    diff: float | None = None  # mean over paired seeds of (this - equal_weighting)
    p_value: float | None = None  # paired test against equal_weighting
    n_pairs: int = 0

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA

    @property
    def complete(self) -> bool:
        """Every protocol seed has an ok latest attempt, and no seed's latest attempt failed."""
        return self.n > 0 and not self.missing and not self.failed


@dataclass(frozen=True)
class Standing:
    label: str
    kind: str  # submission | baseline | reference
    submission: str
    sha256: str
    archs: dict[str, ArchStats]
    score: float | None
    rank: int | None = None
    source: str = ""  # where a reference row was reported
    settings: str = "fp32"  # precision (+compile, +deterministic): runs with other settings are another entry

    @property
    def complete(self) -> bool:
        return self.score is not None


def phase_archs(df: pd.DataFrame, phase: Phase, profile_archs: tuple[str, ...] = PUBLIC_ARCHS) -> list[str]:
    """The architectures scored in ``phase``: the profile's, plus the hidden ones in the final
    phase only, plus any other architecture that has rows of this phase."""
    known = list(profile_archs) + (list(HIDDEN_ARCHS) if phase == "final" else [])
    present = set(df.loc[(df["phase"] == phase) & (df["origin"] == "measured"), "arch"]) if len(df) else set()
    return known + sorted(present - set(known) - set(HIDDEN_ARCHS))


def _per_seed(runs: pd.DataFrame, protocol_seeds: tuple[int, ...] = ()) -> ArchStats:
    """Each seed by its latest attempt: ok counts its accuracy, failed counts as failed. With
    ``protocol_seeds``, runs of other seeds are not counted (extra seeds would move a score that the
    other entries cannot match)."""
    if protocol_seeds:
        runs = runs[runs["seed"].isin(protocol_seeds)]
    latest = runs.sort_values("finished_at", kind="stable").groupby("seed", sort=True).tail(1)
    ok = latest[latest["status"] == "ok"]
    values = {int(seed): float(acc) for seed, acc in zip(ok["seed"], ok["best_fine_acc"])}
    run_ids = {int(seed): str(rid) for seed, rid in zip(ok["seed"], ok["run_id"])}
    failed = tuple(sorted(int(s) for s in latest.loc[latest["status"] != "ok", "seed"]))
    missing = tuple(s for s in protocol_seeds if s not in values and s not in failed)
    attempts = runs.groupby("seed").size()
    retried = tuple(sorted(int(s) for s, n in attempts.items() if n > 1))
    return dataclasses.replace(arch_stats(values, len(failed), run_ids), missing=missing, failed_seeds=failed,
                               retried=retried)


def paired_difference(a: dict[int, float], b: dict[int, float]) -> float | None:
    """Mean over the common seeds of ``a[s] - b[s]`` (None without a common seed)."""
    common = sorted(set(a) & set(b))
    return sum(a[s] - b[s] for s in common) / len(common) if common else None


def paired_test(a: dict[int, float], b: dict[int, float]) -> tuple[float | None, int]:
    """Two-sided paired t-test of ``a - b`` over their common seeds: ``(p, n_pairs)``;
    p is None below 2 pairs or when every difference is identical (no spread to test)."""
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None, len(common)
    diffs = [a[s] - b[s] for s in common]
    if max(diffs) - min(diffs) == 0:
        return None, len(common)
    return float(stats.ttest_rel([a[s] for s in common], [b[s] for s in common]).pvalue), len(common)


def arch_stats(values: dict[int, float], failed: int, run_ids: dict[int, str] | None = None) -> ArchStats:
    accs = list(values.values())
    n = len(accs)
    mean = sum(accs) / n if n else None
    return ArchStats(n=n, failed=failed, mean=mean, std=statistics_std(accs), seeds=dict(values),
                     run_ids=dict(run_ids or {}))


def statistics_std(values: list[float]) -> float | None:
    """Sample standard deviation (ddof = 1), None for fewer than 2 values."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _score(archs: dict[str, ArchStats]) -> float | None:
    """Geometric mean of the per-architecture means; None unless every architecture is complete."""
    if not archs or not all(s.complete for s in archs.values()):
        return None
    means = [s.mean for s in archs.values()]
    if min(means) <= 0:  # a zero accuracy makes the geometric mean zero
        return 0.0
    return geometric_mean(means)


def standings(df: pd.DataFrame, phase: Phase, archs: list[str], protocol_seeds: tuple[int, ...] = ()
              ) -> list[Standing]:
    """Measured entries of ``phase`` with their statistics on ``archs``, ranked by score (best
    first; incomplete entries come last, unranked). Baselines and submissions share one ranking.
    ``protocol_seeds``: the seeds every architecture needs for an entry to be complete."""
    df = df[(df["phase"] == phase) & (df["origin"] == "measured")].copy()
    df["settings"] = [settings_label(p, c, d, t) for p, c, d, t in zip(df["precision"], df["compile"],
                                                                        df["deterministic"], df["topology"])]
    groups = df.groupby(["kind", "submission", "submission_sha256", "settings"], sort=True)
    names = df.groupby(["kind", "submission"])["submission_sha256"].nunique()
    entries: list[Standing] = []
    for (kind, submission, sha, settings), runs in groups:
        per_arch = {arch: _per_seed(runs[runs["arch"] == arch], protocol_seeds) for arch in archs}
        label = submission if names[(kind, submission)] == 1 else f"{submission} @{sha[:8]}"
        if settings != DEFAULT_SETTINGS:
            label += f" [{settings}]"
        entries.append(Standing(label=label, kind=kind, submission=submission, sha256=sha, archs=per_arch,
                                score=_score(per_arch), settings=settings))
    entries = _with_differences(entries)
    return _ranked(entries)


def _with_differences(entries: list[Standing]) -> list[Standing]:
    """Each entry against the ``equal_weighting`` baseline run with the same settings (none when
    absent, or ambiguous because several versions of it are in the file)."""
    out = []
    for e in entries:
        reference = [r for r in entries if r.kind == "baseline" and r.submission == REFERENCE_BASELINE
                     and r.settings == e.settings]
        if len(reference) != 1:
            out.append(e)
            continue
        ref = reference[0]
        archs = {}
        for arch, s in e.archs.items():
            r = ref.archs.get(arch)
            if e is ref or r is None or s.mean is None or r.mean is None:
                archs[arch] = s
                continue
            p, n_pairs = paired_test(s.seeds, r.seeds)
            archs[arch] = dataclasses.replace(s, diff=paired_difference(s.seeds, r.seeds), p_value=p, n_pairs=n_pairs)
        out.append(dataclasses.replace(e, archs=archs))
    return out


def _ranked(entries: list[Standing]) -> list[Standing]:
    scored = sorted((e for e in entries if e.score is not None), key=lambda e: (-e.score, e.label))
    # competition ranking: equal scores share a rank ("1, 1, 3")
    ranked = [dataclasses.replace(e, rank=1 + sum(o.score > e.score for o in scored)) for e in scored]
    return ranked + sorted((e for e in entries if e.score is None), key=lambda e: e.label)


def reference_standings(rows: pd.DataFrame, archs: list[str]) -> list[Standing]:
    """The published rows (``origin == "published"``) as unranked standings, one per (submission,
    source), on ``archs`` whatever the rows' phase. They never enter the measured ranking or tests."""
    published = rows[rows["origin"] == "published"]
    out = []
    for (method, source), runs in published.groupby(["submission", "source"], sort=True):
        per_arch = {}
        for arch in archs:
            sel = runs[runs["arch"] == arch]
            per_arch[arch] = arch_stats({int(s): float(a) for s, a in zip(sel["seed"], sel["best_fine_acc"])}, 0)
        out.append(Standing(label=method, kind="reference", submission=method, sha256="", archs=per_arch,
                            score=_score(per_arch), source=source))
    return out
