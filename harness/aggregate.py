"""Leaderboard aggregates: per-architecture mean, sample std and n over seeds, the score, the
rank, and the difference from ``equal_weighting`` with a paired test over seeds.

Input is the leaderboard as read by :func:`harness.leaderboard.read_rows`: one row per run measured
here, and published rows, which are only ever shown apart (:func:`harness.published.reference_standings`).
An *entry* (:class:`harness.protocol.EntryKey`) is a name and a kind; each standing is one of its
file versions run with one set of protocol options (:class:`harness.protocol.SeriesKey`). Two
entries with byte-identical files are two standings, each marked identical to the other. Per
entry and architecture, each seed counts once, by its latest attempt: if that attempt is ``ok``
its accuracy counts; if it failed, the seed counts as failed (an earlier ok attempt does not
stand in for it: retrying until a seed passes must not pay). An entry is *complete* when, on
every architecture of the phase, every seed of the protocol (the profile's seeds) has an ok
latest attempt and no seed's latest attempt failed. Runs of seeds outside the protocol are not
counted when the profile is known. Only complete entries get a score (the
geometric mean over the architectures of the per-architecture means) and a rank; the others are
shown with what is missing or failed.

Comparison groups: the protocol's settings that change what a run computes (precision, topology,
compile, deterministic: :attr:`harness.protocol.RunSettings.label`; profile and phase are one view)
define a group. Entries are ranked, compared with the group's own ``equal_weighting`` and
Holm-adjusted only within their group; the headline group is the task's settings (``fp32``).

Significance: seeds fix the initialisation and the data order, so an entry's run with seed s
and ``equal_weighting``'s run with seed s are a matched pair. The difference from equal
weighting is the mean of the per-seed differences over the seeds both have (paired seeds only,
so a seed one of them lacks cannot move it), and the test is a two-sided paired t-test over the
same pairs (df = n - 1). With the protocol's n = 3 it has 2 degrees of freedom: only a large
difference of consistent sign reaches p < 0.05, and a difference without a marker is *not*
evidence that the methods are equal. No test is run with fewer than 2 pairs. Each difference comes
with its 95% t-interval, per architecture and pooled over the paired (architecture, seed). Every
complete pair of entries of a group is tested the same way, pooled. All p-values of a group (each
entry against equal weighting per architecture and pooled, and every pair) are one family, adjusted
with Holm's step-down method; significance is read on the adjusted value only. A complete entry's
rank comes with the range of ranks those pairwise results allow, and its score with the 95%
t-interval over its per-seed scores (:mod:`harness.ranking`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pandas as pd

from harness import ranking
from harness.protocol import ENTRY_COLUMNS, HIDDEN_ARCHS, PUBLIC_ARCHS, EntryKey, Phase, RunSettings
from harness.stats import LEVEL as LEVEL  # re-exported: the views state it
from harness.stats import geometric_mean, holm, mean, paired_test, statistics_std, t_interval
from harness.text import one_line

REFERENCE_BASELINE = "equal_weighting.py"
DEFAULT_SETTINGS = "fp32"


def settings_label(precision: object, compile: object, deterministic: object, topology: object = "shared") -> str:
    """:attr:`harness.protocol.RunSettings.label` of a row's cells (booleans as the CSV holds them)."""
    truthy = lambda v: str(v).strip().lower() in ("true", "1")  # noqa: E731
    cells = {
        "profile": "",
        "precision": str(precision),
        "compile": truthy(compile),
        "deterministic": truthy(deterministic),
        "topology": str(topology),
    }
    return RunSettings.model_validate(cells).label


ALPHA = 0.05
TEST_NAME = "paired t-test over seeds, two-sided"
CORRECTION = "Holm"  # family-wise error over every test of the view (entries x architectures, and pooled)


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
    ci: tuple[float, float] | None = None  # 95% t-interval of diff (2 pairs or more)
    p_adjusted: float | None = None  # p_value adjusted for the view's multiple comparisons (Holm)
    no_test: str = ""  # why diff has no p-value ("1 paired seed", "identical per-seed differences", ...)
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
    def significant(self) -> bool:
        """Only on the adjusted p-value."""
        return self.p_adjusted is not None and self.p_adjusted < ALPHA

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
    note: str = ""  # a published row: which implementation produced it (harness.published)
    settings: str = "fp32"  # its comparison group (:attr:`RunSettings.label`): ranked and tested only within it
    pooled: ArchStats | None = None  # the comparison with equal_weighting over (architecture, seed) pairs
    score_ci: tuple[float, float] | None = None  # 95% t-interval over its per-seed scores
    rank_range: tuple[int, int] | None = None  # the ranks the group's pairwise tests allow (best, worst)
    cost: float | None = None  # training time relative to equal_weighting's (same device and settings)
    cost_on: str = ""  # the devices and sandboxes the cost compared ("cpu, docker")
    pairs: dict[str, ArchStats] = field(default_factory=dict)  # pooled test with each complete entry ranked below
    above: tuple[str, ...] = ()  # the entries of its group it is significantly above (after Holm)
    picked: dict[str, str] = field(default_factory=dict)  # a control line: arch -> the entry it shows
    version: str = ""  # several versions of the file: its first run's date, "superseded, " unless the newest
    identical_to: tuple[str, ...] = ()  # other entries with a byte-identical version (the copy check)

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
    def version_key(self) -> tuple[str, str, str]:
        """``(kind, name, sha256)``: one file version of one entry."""
        return (self.kind, self.submission, self.sha256)

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


def standings(df: pd.DataFrame, phase: Phase, archs: list[str], protocol_seeds: tuple[int, ...] = ()) -> list[Standing]:
    """Measured entries of ``phase`` with their statistics on ``archs``, ranked by score (best
    first; incomplete entries come last, unranked). Baselines and submissions share one ranking.
    ``protocol_seeds``: the seeds every architecture needs for an entry to be complete."""
    df = df[(df["phase"] == phase) & (df["origin"] == "measured")].copy()
    df["settings"] = [
        settings_label(p, c, d, t)
        for p, c, d, t in zip(df["precision"], df["compile"], df["deterministic"], df["topology"])
    ]
    entry = list(ENTRY_COLUMNS)
    groups = df.groupby(entry + ["submission_sha256", "settings"], sort=True)
    names = df.groupby(entry)["submission_sha256"].nunique()
    first = df.groupby(entry + ["submission_sha256"])["finished_at"].min()  # each version's first run
    copies = identical_entries(df)
    entries: list[Standing] = []
    for (kind, submission, sha, settings), runs in groups:
        per_arch = {arch: _per_seed(runs[runs["arch"] == arch], protocol_seeds) for arch in archs}
        shown = one_line(str(submission))  # a name from the file: nothing in it acts on a terminal or page
        label = shown if names[(kind, submission)] == 1 else f"{shown} @{sha[:8]}"
        if settings != DEFAULT_SETTINGS:
            label += f" [{settings}]"
        version = ""
        if names[(kind, submission)] > 1:  # the newest version is the one first run last (a re-run of an
            newest = first[(kind, submission)].idxmax()  # old version's seed does not make it newer)
            version = ("" if sha == newest else "superseded, ") + str(first[(kind, submission, sha)])[:10]
        entries.append(
            Standing(
                label=label,
                kind=kind,
                submission=submission,
                sha256=sha,
                archs=per_arch,
                score=score_of(per_arch),
                settings=settings,
                version=version,
                identical_to=copies.get((kind, submission, sha), ()),
            )
        )
    out: list[Standing] = []
    for group in sorted({e.settings for e in entries}, key=lambda g: (g != DEFAULT_SETTINGS, g)):
        out += compare_group([e for e in entries if e.settings == group])
    return out


def compare_group(members: list[Standing]) -> list[Standing]:
    """One comparison group (entries with the same settings): differences from its equal weighting,
    every test adjusted as one family, ranks, rank ranges and score intervals; ranked entries first."""
    return _ordered(_tested(_with_differences(members)))


def identical_entries(rows: pd.DataFrame) -> dict[tuple[str, str, str], tuple[str, ...]]:
    """``(kind, name, sha256)`` -> the other entries that have a byte-identical version among
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
                out[(kind, name, sha)] = tuple(
                    one_line(n) if k == "submission" else f"baseline {one_line(n)}" for k, n in others
                )
    return out


def compare(a: dict, b: dict) -> ArchStats:
    """``a`` against ``b`` over their common keys (seeds, or (architecture, seed) pairs): the mean
    difference, its t-interval and the paired t-test (the statistics fields of an ArchStats)."""
    common = sorted(set(a) & set(b))
    diffs = [a[k] - b[k] for k in common]
    p, n_pairs = paired_test(a, b)
    no_test = (
        ""
        if p is not None
        else (f"{n_pairs} paired seed{'s' * (n_pairs != 1)}" if n_pairs < 2 else "identical per-seed differences")
    )
    return ArchStats(
        n=0,
        failed=0,
        mean=None,
        std=None,
        diff=sum(diffs) / len(diffs) if diffs else None,
        p_value=p,
        n_pairs=n_pairs,
        ci=t_interval(diffs),
        no_test=no_test,
    )


def _with_differences(entries: list[Standing]) -> list[Standing]:
    """Each entry against the ``equal_weighting`` baseline run with the same settings (none when
    absent, or ambiguous because several versions of it are in the file): per architecture over
    paired seeds, and pooled over paired (architecture, seed)."""
    out = []
    for e in entries:
        reference = [
            r
            for r in entries
            if r.kind == "baseline" and r.submission == REFERENCE_BASELINE and r.settings == e.settings
        ]
        if len(reference) != 1:  # no reference, or an ambiguous one: nothing to compare with
            out.append(e)
            continue
        ref = reference[0]
        if ref is e:
            out.append(dataclasses.replace(e, cost=cost_ratio(e, e), cost_on=cost_basis(e, e)))
            continue
        archs = {}
        for arch, s in e.archs.items():
            r = ref.archs.get(arch)
            if r is None or s.mean is None or r.mean is None:
                archs[arch] = s
                continue
            c = compare(s.seeds, r.seeds)
            archs[arch] = dataclasses.replace(
                s, diff=c.diff, p_value=c.p_value, n_pairs=c.n_pairs, ci=c.ci, no_test=c.no_test
            )
        mine, theirs = arch_seed_values(e.archs), arch_seed_values(ref.archs)
        pooled = compare(mine, theirs) if set(mine) & set(theirs) else None
        out.append(
            dataclasses.replace(e, archs=archs, pooled=pooled, cost=cost_ratio(e, ref), cost_on=cost_basis(e, ref))
        )
    return out


def arch_seed_values(archs: dict[str, ArchStats]) -> dict[tuple[str, int], float]:
    """``(architecture, seed) -> accuracy``: what the pooled comparisons pair up."""
    return {(arch, seed): v for arch, s in archs.items() for seed, v in s.seeds.items()}


def cost_ratio(e: Standing, ref: Standing) -> float | None:
    """``e``'s training time over ``ref``'s, summed over the (architecture, seed) runs both have on
    the same machine (None without such a pair). Entries are already split by precision and the
    other settings; the device, channels_last, sandbox and torch version are matched here, run by
    run. Runs that shared a device (``--jobs N``) are slower each, and the rows do not say so."""
    mine = ours = 0.0
    for _, seconds, theirs in _cost_pairs(e, ref):
        mine, ours = mine + seconds, ours + theirs
    return mine / ours if ours else None


def cost_basis(e: Standing, ref: Standing) -> str:
    """What :func:`cost_ratio` compared: the devices and sandboxes of its run pairs (``cpu, docker``)."""
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


def _reference_of(members: list[Standing]) -> Standing | None:
    """The group's ``equal_weighting`` standing, None when absent or ambiguous (several versions)."""
    found = [e for e in members if e.kind == "baseline" and e.submission == REFERENCE_BASELINE]
    return found[0] if len(found) == 1 else None


def _tested(members: list[Standing]) -> list[Standing]:
    """One comparison group's tests, Holm-adjusted as one family: every entry against equal
    weighting (per architecture and pooled) and every pair of complete entries (pooled over
    (architecture, seed); a pair with equal weighting is that entry's pooled test, counted once).
    Then the complete entries' ranks, rank ranges (:func:`harness.ranking.rank_ranges`) and score
    intervals (:func:`harness.ranking.score_interval`)."""
    ref = _reference_of(members)
    scored = sorted((e for e in members if e.score is not None), key=lambda e: (-(e.score or 0.0), e.label))
    pairs: dict[tuple[int, int], ArchStats] = {}
    for i, a in enumerate(scored):
        for j in range(i + 1, len(scored)):
            b = scored[j]
            if ref is not None and (a is ref or b is ref):
                continue  # the other entry's pooled comparison with equal weighting
            pairs[(i, j)] = compare(arch_seed_values(a.archs), arch_seed_values(b.archs))
    # on one architecture (--arch) the pooled test is that architecture's test: one slot, not two
    single = {id(e) for e in members if len(e.archs) == 1 and e.pooled is not None}
    slots: list[tuple[Standing, str]] = [(e, arch) for e in members if id(e) not in single for arch in e.archs] + [
        (e, POOLED) for e in members if e.pooled is not None
    ]
    pair_keys = list(pairs)
    adjusted = holm([_slot(e, arch).p_value for e, arch in slots] + [pairs[k].p_value for k in pair_keys])
    tested = {id(e): dataclasses.replace(e, archs=dict(e.archs)) for e in members}
    for (e, arch), p in zip(slots, adjusted):
        t = tested[id(e)]
        if arch == POOLED:
            tested[id(e)] = dataclasses.replace(t, pooled=dataclasses.replace(_slot(e, POOLED), p_adjusted=p))
            for only in t.archs if id(e) in single else ():
                t.archs[only] = dataclasses.replace(t.archs[only], p_adjusted=p)
        else:
            t.archs[arch] = dataclasses.replace(t.archs[arch], p_adjusted=p)
    for k, p in zip(pair_keys, adjusted[len(slots) :]):
        pairs[k] = dataclasses.replace(pairs[k], p_adjusted=p)
    above = {(i, j) if (pairs[(i, j)].diff or 0.0) > 0 else (j, i) for (i, j) in pairs if pairs[(i, j)].significant}
    for i, e in enumerate(scored):  # pairs with equal weighting: the entry's pooled test
        pooled = tested[id(e)].pooled
        if ref is not None and e is not ref and pooled is not None and pooled.significant:
            r = scored.index(ref)
            above.add((i, r) if (pooled.diff or 0.0) > 0 else (r, i))
    scores = [e.score or 0.0 for e in scored]
    ranges = ranking.rank_ranges(scores, above)
    for i, (e, rank, span) in enumerate(zip(scored, ranking.competition_ranks(scores), ranges)):
        tested[id(e)] = dataclasses.replace(
            tested[id(e)],
            rank=rank,
            rank_range=span,
            score_ci=ranking.score_interval({arch: s.seeds for arch, s in e.archs.items()}),
            pairs={scored[j].label: pairs[(a, j)] for (a, j) in pair_keys if a == i},
            above=tuple(scored[j].label for a, j in sorted(above) if a == i),
        )
    return [tested[id(e)] for e in members]


POOLED = "(pooled)"


def _slot(e: Standing, arch: str) -> ArchStats:
    found = e.pooled if arch == POOLED else e.archs[arch]
    if found is None:
        raise ValueError("a slot without a comparison")
    return found


def _ordered(members: list[Standing]) -> list[Standing]:
    """Ranked entries by rank, then the incomplete ones by what they have: the architectures with
    ok runs (most first), then the geometric mean of those architectures' means (best first)."""

    def have(e: Standing) -> tuple[int, float, str]:
        means = [s.mean for s in e.archs.values() if s.mean is not None and s.mean > 0]
        return (-len(means), -(geometric_mean(means) if means else 0.0), e.label)

    ranked = sorted((e for e in members if e.rank is not None), key=lambda e: (e.rank or 0, e.label))
    return ranked + sorted((e for e in members if e.rank is None), key=have)
