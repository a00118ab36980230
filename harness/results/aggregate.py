"""Leaderboard entries: per architecture the mean, sample std and n over seeds, the score, and the
descriptive difference from ``equal_weighting`` on each architecture; what is tested and claimed
about a comparison group is :mod:`harness.results.board` (with :mod:`harness.results.family`).

Input is the leaderboard as read by :func:`harness.results.read_rows`: one row per run measured
here, and published rows, which are only ever shown apart (:func:`harness.results.published.reference_standings`).
An *entry* (:class:`harness.protocol.EntryKey`) is a name and a kind; each standing is one of its
file versions run with one set of protocol options (:class:`harness.protocol.SeriesKey`). One
version per entry and settings is *current* (the one the board ranks): the newest (the version
first run last) unless the view selects another (``--version NAME@SHA``); the others are listed,
never ranked or tested. Two entries with byte-identical files are two standings, each marked
identical to the other.

Per entry and architecture, each seed counts once, by its latest attempt: if that attempt is ``ok``
its accuracy counts; if it failed, the seed counts as failed (an earlier ok attempt does not stand in
for it: retrying until a seed passes must not pay). An entry is *complete* when, on every
architecture of the phase, every seed of the protocol (the profile's seeds) has an ok latest attempt
and no seed's latest attempt failed (an extra seed's included). The score (the geometric mean over
the architectures of the per-architecture means) and the accuracies shown are over the protocol's
seeds only; ok runs of extra seeds (``harness evaluate --seed 7``) are kept apart (``ArchStats.extra``)
and count in the tests, which pair the seeds both sides have. Only complete entries get a score.

Comparison groups: the protocol's settings that change what a run computes (precision, topology,
compile, deterministic, the protocol version: :attr:`harness.protocol.RunSettings.label`; profile and
phase are one view)
define a group. Entries are ranked, compared with the group's own ``equal_weighting`` and tested
only within their group; the headline group is the task's settings (``fp32``).

The per-architecture difference from equal weighting here is descriptive: the mean of the per-seed
differences over the paired seeds, its 95% t-interval and the unadjusted paired t-test (df = n - 1;
none below 2 pairs). It is not part of the board's family of tests and no claim is read from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from harness.protocol import (
    ENTRY_COLUMNS,
    HIDDEN_ARCHS,
    PUBLIC_ARCHS,
    SETTINGS_COLUMNS,
    EntryKey,
    Phase,
    RunSettings,
    VersionKey,
)
from harness.results.family import ALPHA as ALPHA  # re-exported: the views state it
from harness.results.stats import LEVEL as LEVEL  # re-exported: the views state it
from harness.results.stats import geometric_mean, holm, mean, paired_test, statistics_std, t_interval
from harness.results.store import latest_attempts
from harness.util.text import one_line

__all__ = ["ALPHA", "LEVEL", "holm", "paired_test"]  # re-exported for the tests and views

REFERENCE_BASELINE = "equal_weighting.py"
DEFAULT_SETTINGS = RunSettings(profile="").label  # "fp32": the protocol's own, the headline group


def settings_labels(rows: pd.DataFrame) -> list[str]:
    """:attr:`harness.protocol.RunSettings.label` of each row (its comparison group), from its settings
    columns as the CSV holds them (:meth:`~harness.protocol.RunSettings.from_cells`)."""
    columns = [c for c in SETTINGS_COLUMNS if c in rows.columns]
    return [RunSettings.from_cells(dict(zip(columns, cells))).label for cells in zip(*(rows[c] for c in columns))]


TEST_NAME = "paired t-test over per-seed scores, two-sided"
CORRECTION = "Holm"  # weighted step-down, one family per comparison group (harness.results.family)


@dataclass(frozen=True)
class Comparison:
    """One paired comparison over seeds: the mean difference, its 95% t-interval, the raw and the
    adjusted p-value. ``family``: ``primary`` or ``pairwise`` for a test of the group's family (its
    ``weight``: its share of alpha), empty for a descriptive one (no adjusted p, no claim)."""

    diff: float | None
    ci: tuple[float, float] | None
    n_pairs: int
    p_value: float | None
    p_adjusted: float | None = None
    family: str = ""
    weight: float = 0.0
    no_test: str = ""  # why there is no p-value ("1 paired seed", "identical per-seed differences", ...)
    seeds: tuple[int, ...] = ()  # the paired seeds
    p_equivalent: float | None = None  # TOST against the margin (the tuned static weight only)
    p_equivalent_adjusted: float | None = None
    weight_equivalent: float = 0.0

    @property
    def significant(self) -> bool:
        """Only on the adjusted p-value, and only for a test of the family."""
        return self.p_adjusted is not None and self.p_adjusted < ALPHA


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
    diff: float | None = None  # mean over paired seeds of (this - equal_weighting): descriptive
    p_value: float | None = None  # unadjusted paired test against equal_weighting: descriptive, no claim
    n_pairs: int = 0
    ci: tuple[float, float] | None = None  # 95% t-interval of diff (2 pairs or more)
    no_test: str = ""  # why diff has no p-value ("1 paired seed", "identical per-seed differences", ...)
    extra: dict[int, float] = field(default_factory=dict)  # ok seeds outside the protocol: tests only
    final: dict[int, float] = field(default_factory=dict)  # seed -> final-epoch fine accuracy of the counted run
    coarse: dict[int, float] = field(default_factory=dict)  # seed -> best coarse accuracy of the counted run
    wall: dict[int, tuple[str, float]] = field(default_factory=dict)  # seed -> (machine, training seconds)
    failed_runs: dict[int, str] = field(default_factory=dict)  # seed -> its failed latest attempt's run directory

    @property
    def final_mean(self) -> float | None:
        return mean(list(self.final.values()))

    @property
    def coarse_mean(self) -> float | None:
        return mean(list(self.coarse.values()))

    @property
    def coarse_std(self) -> float | None:
        return statistics_std(list(self.coarse.values()))

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
    note: str = ""  # a published row: which implementation produced it (harness.results.published)
    settings: str = "fp32"  # its comparison group (:attr:`RunSettings.label`): ranked and tested only within it
    vs_ref: Comparison | None = None  # against equal_weighting, on per-seed scores (ranked entries: primary)
    vs_tuned: Comparison | None = None  # against the tuned static weight, with the equivalence test
    tuned_label: str = ""  # better | equivalent | worse | inconclusive (ranked entries, not static weights)
    improvement: float | None = None  # rliable's P(this > equal_weighting): descriptive, not a test
    score_ci: tuple[float, float] | None = None  # 95% t-interval over its per-seed scores
    rank_range: tuple[int, int] | None = None  # the ranks the group's significant results allow (best, worst)
    cost: float | None = None  # training time relative to equal_weighting's (same device and settings)
    cost_on: str = ""  # the devices and sandboxes the cost compared ("cpu, docker")
    pairs: dict[str, Comparison] = field(default_factory=dict)  # pairwise test with each ranked entry below it
    above: tuple[str, ...] = ()  # the entries of its group it is significantly above (after the adjustment)
    picked: dict[str, str] = field(default_factory=dict)  # a control line: arch -> the entry it shows
    version: str = ""  # several versions of the file: its first run's date, "superseded, " unless current
    identical_to: tuple[str, ...] = ()  # other entries with a byte-identical version (the copy check)
    current: bool = True  # the version the board ranks (the newest, or the one the view selects)
    single_seed_score: float | None = None  # a published row of one seed: its score, not comparable
    phase: str = ""  # a published row: the phase it was scored in

    @property
    def display(self) -> str:
        """The label as a person reads it: with the version's date (and superseded) when the file has several,
        and the entries whose file is byte-identical to this one."""
        notes = [self.version] if self.version else []
        if self.identical_to:
            notes.append(f"identical to {', '.join(self.identical_to)}")
        return f"{self.label} ({'; '.join(notes)})" if notes else self.label

    @property
    def entry(self) -> EntryKey:
        return EntryKey.model_validate({"kind": self.kind, "name": self.submission})

    @property
    def version_key(self) -> VersionKey | None:
        """One file version of one entry (an entry's: never a byte-identical copy's); None for a line
        that is no file's version (a published reference, the tuned static weight's control)."""
        if self.kind not in ("baseline", "submission"):
            return None
        return VersionKey(entry=self.entry, sha256=self.sha256)

    @property
    def complete(self) -> bool:
        return self.score is not None

    @property
    def name(self) -> str:
        """The entry's name as a person reads it (one line)."""
        return one_line(self.submission)


def phase_archs(df: pd.DataFrame, phase: Phase, profile_archs: tuple[str, ...] = PUBLIC_ARCHS) -> list[str]:
    """The architectures scored in ``phase``: the profile's, plus the hidden ones in the final
    phase only, plus any other architecture that has rows of this phase."""
    known = list(profile_archs) + (list(HIDDEN_ARCHS) if phase == "final" else [])
    present = set(df.loc[(df["phase"] == phase) & (df["origin"] == "measured"), "arch"]) if len(df) else set()
    return known + sorted(present - set(known) - set(HIDDEN_ARCHS))


def _per_seed(runs: pd.DataFrame, protocol_seeds: tuple[int, ...] = ()) -> ArchStats:
    """Each seed by its latest attempt: ok counts its accuracy, failed counts as failed. With
    ``protocol_seeds``, the ok runs of other seeds are kept apart (``extra``: the tests pair them, the
    accuracies shown and the score do not count them, since other entries may not have them); a failed
    latest attempt of any seed counts as failed."""
    latest = latest_attempts(runs, ["seed"])
    outside = ~latest["seed"].isin(protocol_seeds) if protocol_seeds else pd.Series(False, index=latest.index)
    ok_all = latest[latest["status"] == "ok"]
    ok = ok_all[~outside.loc[ok_all.index]]
    inside = set(ok["seed"])
    extra = {int(seed): float(acc) for seed, acc in zip(ok_all["seed"], ok_all["best_fine_acc"]) if seed not in inside}
    values = {int(seed): float(acc) for seed, acc in zip(ok["seed"], ok["best_fine_acc"])}
    run_ids = {int(seed): str(rid) for seed, rid in zip(ok["seed"], ok["run_id"])}
    final = {int(seed): float(acc) for seed, acc in zip(ok["seed"], ok["final_fine_acc"]) if pd.notna(acc)}
    coarse = {int(seed): float(acc) for seed, acc in zip(ok["seed"], ok["best_coarse_acc"]) if pd.notna(acc)}
    wall = {
        int(seed): (_machine(row), float(row["wall_seconds"]))
        for seed, (_, row) in zip(ok["seed"], ok.iterrows())
        if pd.notna(row["wall_seconds"])
    }
    bad = latest[latest["status"] != "ok"]
    failed = tuple(sorted(int(s) for s in bad["seed"]))
    missing = tuple(s for s in protocol_seeds if s not in values and s not in failed)
    attempts = runs.groupby("seed").size()
    retried = tuple(sorted(int(s) for s, n in attempts.items() if n > 1))
    return dataclasses.replace(
        arch_stats(values, len(failed), run_ids),
        missing=missing,
        failed_seeds=failed,
        retried=retried,
        final=final,
        coarse=coarse,
        wall=wall,
        failed_runs={int(seed): str(rid) for seed, rid in zip(bad["seed"], bad["run_id"])},
        extra=extra,
    )


def _machine(row: pd.Series) -> str:
    """What a run's time depends on beyond the entry's settings, as the row records it: the device,
    channels_last, the sandbox and the torch version (not how many runs shared the device)."""
    return "|".join(str(row.get(c)) for c in ("device", "channels_last", "sandbox", "torch_version"))


def arch_stats(values: dict[int, float], failed: int, run_ids: dict[int, str] | None = None) -> ArchStats:
    accs = list(values.values())
    return ArchStats(
        n=len(accs),
        failed=failed,
        mean=mean(accs),
        std=statistics_std(accs),
        seeds=dict(values),
        run_ids=dict(run_ids or {}),
    )


def score_of(archs: dict[str, ArchStats]) -> float | None:
    """Geometric mean of the per-architecture means; None unless every architecture is complete."""
    if not archs or not all(s.complete for s in archs.values()):
        return None
    means = [s.mean for s in archs.values() if s.mean is not None]
    if min(means) <= 0:  # a zero accuracy makes the geometric mean zero
        return 0.0
    return geometric_mean(means)


def entries(
    df: pd.DataFrame,
    phase: Phase,
    archs: list[str],
    protocol_seeds: tuple[int, ...] = (),
    selected: Mapping[tuple[str, str], str] | None = None,
) -> list[Standing]:
    """Measured entries of ``phase`` (one standing per file version and settings) with their
    statistics on ``archs``, untested (:func:`harness.results.board.groups` tests and ranks them).
    ``protocol_seeds``: the seeds every architecture needs for an entry to be complete;
    ``selected``: ``(kind, name) -> sha256`` of the version to rank instead of the newest."""
    df = df[(df["phase"] == phase) & (df["origin"] == "measured")].copy()
    df["settings"] = settings_labels(df)
    entry = list(ENTRY_COLUMNS)
    groups = df.groupby(entry + ["submission_sha256", "settings"], sort=True)
    names = df.groupby(entry)["submission_sha256"].nunique()
    first = df.groupby(entry + ["submission_sha256"])["finished_at"].min()  # each version's first run
    copies = identical_entries(df)
    out: list[Standing] = []
    for (kind, submission, sha, settings), runs in groups:
        per_arch = {arch: _per_seed(runs[runs["arch"] == arch], protocol_seeds) for arch in archs}
        shown = one_line(str(submission))  # a name from the file: nothing in it acts on a terminal or page
        label = shown if names[(kind, submission)] == 1 else f"{shown} @{sha[:8]}"
        if settings != DEFAULT_SETTINGS:
            label += f" [{settings}]"
        version, current = "", True
        if names[(kind, submission)] > 1:  # the newest version is the one first run last (a re-run of an
            newest = first[(kind, submission)].idxmax()  # old version's seed does not make it newer)
            chosen = (selected or {}).get((kind, submission), newest)
            current = sha == chosen
            date = str(first[(kind, submission, sha)])[:10]
            if current:
                version = date + (", selected" if chosen != newest else "")
            else:
                version = (
                    "superseded, "
                    if first[(kind, submission, sha)] < first[(kind, submission, chosen)]
                    else "not selected, "
                ) + date
        out.append(
            Standing(
                label=label,
                kind=kind,
                submission=submission,
                sha256=sha,
                archs=per_arch,
                score=score_of(per_arch),
                settings=settings,
                version=version,
                identical_to=copies.get(VersionKey.of(kind, submission, sha), ()),
                current=current,
            )
        )
    return out


def identical_entries(rows: pd.DataFrame) -> dict[VersionKey, tuple[str, ...]]:
    """A version -> the other entries that have a byte-identical version among
    ``rows`` (measured rows): the copy check. A submission is marked identical to any other entry
    (``baseline x.py`` for a baseline); a baseline only to another baseline. Nothing is hidden: each
    copy is evaluated and shown as its own entry."""
    rows = rows[rows["origin"] == "measured"]
    by_sha: dict[str, set[tuple[str, str]]] = {}
    for kind, name, sha in zip(rows["kind"], rows["submission"], rows["submission_sha256"]):
        by_sha.setdefault(str(sha), set()).add((str(kind), str(name)))
    out = {}
    for sha, entries in by_sha.items():
        for kind, name in entries:
            others = sorted(
                (k, n) for k, n in entries if (k, n) != (kind, name) and (kind == "submission" or k == kind)
            )
            if others:
                out[VersionKey.of(kind, name, sha)] = tuple(
                    one_line(n) if k == "submission" else f"baseline {one_line(n)}" for k, n in others
                )
    return out


def compare(a: Mapping[int, float], b: Mapping[int, float]) -> Comparison:
    """``a`` against ``b`` over their common seeds: the mean difference, its t-interval and the
    unadjusted paired t-test (a descriptive comparison; :mod:`harness.results.family` runs the board's tests)."""
    common = sorted(set(a) & set(b))
    diffs = [a[k] - b[k] for k in common]
    p, n_pairs = paired_test(dict(a), dict(b))
    no_test = (
        ""
        if p is not None
        else (f"{n_pairs} paired seed{'s' * (n_pairs != 1)}" if n_pairs < 2 else "identical per-seed differences")
    )
    return Comparison(
        diff=sum(diffs) / len(diffs) if diffs else None,
        ci=t_interval(diffs),
        n_pairs=n_pairs,
        p_value=p,
        no_test=no_test,
        seeds=tuple(common),
    )


def with_differences(entries: list[Standing], ref: Standing | None) -> list[Standing]:
    """Each entry against ``ref`` (its group's ``equal_weighting``, or None): per architecture, the
    descriptive difference over the paired seeds (protocol and extra), and the cost."""
    if ref is None:
        return entries
    out = []
    for e in entries:
        if e is ref:
            out.append(dataclasses.replace(e, cost=cost_ratio(e, e), cost_on=cost_basis(e, e)))
            continue
        archs = {}
        for arch, s in e.archs.items():
            r = ref.archs.get(arch)
            if r is None or s.mean is None or r.mean is None:
                archs[arch] = s
                continue
            c = compare(s.seeds | s.extra, r.seeds | r.extra)
            archs[arch] = dataclasses.replace(
                s, diff=c.diff, p_value=c.p_value, n_pairs=c.n_pairs, ci=c.ci, no_test=c.no_test
            )
        out.append(dataclasses.replace(e, archs=archs, cost=cost_ratio(e, ref), cost_on=cost_basis(e, ref)))
    return out


def cost_ratio(e: Standing, ref: Standing) -> float | None:
    """``e``'s training time over ``ref``'s, summed over the (architecture, seed) runs both have on
    the same machine (None without such a pair). Entries are already split by precision and the
    other settings; the device, channels_last, sandbox and torch version are matched here, run by
    run. Runs that shared a device (``--jobs N``) are slower each, and the rows do not say so. None
    when the reference's runs took under :data:`MIN_COST_SECONDS` (median): a few seconds of training
    are dominated by start-up and timer noise (the same file measured 0.87x, then 1.51x)."""
    pairs = _cost_pairs(e, ref)
    ref_seconds = sorted(theirs for _, _, theirs in pairs)
    if not pairs or ref_seconds[len(ref_seconds) // 2] < MIN_COST_SECONDS:
        return None
    return sum(seconds for _, seconds, _ in pairs) / sum(ref_seconds)


MIN_COST_SECONDS = 30.0  # median training time of the reference's paired runs below which no cost is shown


def cost_basis(e: Standing, ref: Standing) -> str:
    """What :func:`cost_ratio` compared: the devices and sandboxes of its run pairs (``cpu, docker``)."""
    if cost_ratio(e, ref) is None:
        return ""
    found = {tuple(machine.split("|")[i] for i in (0, 2)) for machine, _, _ in _cost_pairs(e, ref)}
    return "; ".join(f"{device}, {sandbox}" for device, sandbox in sorted(found))


def _cost_pairs(e: Standing, ref: Standing) -> list[tuple[str, float, float]]:
    """``(machine, e's seconds, ref's seconds)`` for each (architecture, seed) run both have on one machine."""
    out = []
    for arch, s in e.archs.items():
        r = ref.archs.get(arch)
        for seed, (machine, seconds) in s.wall.items():
            if r is not None and seed in r.wall and r.wall[seed][0] == machine and r.wall[seed][1] > 0:
                out.append((machine, seconds, r.wall[seed][1]))
    return out
