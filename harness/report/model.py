"""The aggregated leaderboard of one profile and phase, as every format renders it.

Sections, always in this order and never mixed: the headline comparison group (the task's
settings: fp32 on the shared network) as submissions, then baselines (ranked together); one
section per other comparison group (another precision, topology, compile or deterministic:
ranked, compared and adjusted only among themselves, with their own equal weighting or none);
and published numbers reported elsewhere (full profile only, unranked, outside every aggregate
and test).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from harness.errors import UsageError
from harness.protocol import PROFILES, Phase, VersionKey
from harness.results import aggregate, board, published, static_sweep
from harness.results.aggregate import Standing
from harness.results.family import Power
from harness.results.retired import Retired

SECTIONS = (
    ("submission", "submissions"),
    ("baseline", "baselines"),
    ("reference", "reported elsewhere (published numbers, not measured here)"),
)
HEADLINE = aggregate.DEFAULT_SETTINGS  # the task's settings: the comparison the board is about


@dataclass(frozen=True)
class Section:
    """One table: ``kind`` is submission, baseline, group (another comparison group: both kinds,
    ranked among themselves) or reference; ``group`` the settings label of its entries."""

    kind: str
    title: str
    rows: list[Standing]
    group: str = HEADLINE


def group_title(group: str, rows: list[Standing]) -> str:
    """An other group's heading: its settings, and its equal-weighting reference or the lack of one."""
    has_ref = any(e.kind == "baseline" and e.submission == aggregate.REFERENCE_BASELINE for e in rows)
    ref = aggregate.REFERENCE_BASELINE.removesuffix(".py")
    return f"other settings: {group} (ranked and tested only among themselves; " + (
        f"Δ against {ref} [{group}])" if has_ref else f"no {ref} run with these settings: no Δ)"
    )


@dataclass(frozen=True)
class Report:
    profile: str
    phase: Phase
    archs: list[str]
    entries: list[Standing]  # measured, ranked
    references: list[Standing]
    seeds: tuple[int, ...] = ()  # the protocol's seeds: a complete entry has each, ok, on every architecture
    controls: list[Standing] = field(default_factory=list)  # tuned and best static weight: under the baselines
    retired: list[Retired] = field(default_factory=list)  # versions hidden from this view (harness retire)

    only_arch: str | None = None  # ranked on this architecture alone (harness leaderboard --arch)
    power: dict[str, Power | None] = field(default_factory=dict)  # per group: what its tests can detect
    family_size: dict[str, int] = field(default_factory=dict)  # per group: the tests of its family

    @property
    def tested(self) -> bool:
        """Whether any group of the view has a test in its family (one seed: none)."""
        return any(self.family_size.values())

    def section(self, kind: str) -> list[Standing]:
        """The headline group's rows of one kind, in order (the baselines' end with the control
        lines: the tuned static weight, then the best static weight), or the published rows."""
        if kind == "reference":
            return self.references
        head = [e for e in self.entries if e.settings == HEADLINE and e.kind == kind]
        return head + ([c for c in self.controls if c.settings == HEADLINE] if kind == "baseline" else [])

    def sections(self) -> list[Section]:
        """Every non-empty table in order: the headline group's submissions and baselines, each other
        comparison group (with its control line), the published rows."""
        out = [Section(kind, title, self.section(kind)) for kind, title in SECTIONS[:2]]
        for group in dict.fromkeys(e.settings for e in self.entries if e.settings != HEADLINE):
            rows = [e for e in self.entries if e.settings == group]
            rows += [c for c in self.controls if c.settings == group]
            out.append(Section("group", group_title(group, rows), rows, group))
        out.append(Section("reference", SECTIONS[2][1], self.references))
        return [s for s in out if s.rows]


def build(
    df: pd.DataFrame,
    phase: Phase,
    profile: str | None = None,
    retired: Mapping[VersionKey, Retired] | None = None,
    arch: str | None = None,
    versions: Sequence[str] = (),
) -> Report:
    """Aggregate the leaderboard rows of one profile and phase. With several profiles in the
    file, ``profile`` must name one. The measured rows of ``retired`` versions (by kind, name and
    sha256) are left out, as if never appended; the report lists them. With ``arch``, entries are
    scored, tested and ranked on that architecture alone. ``versions``: ``NAME@SHA`` of the file
    versions to rank instead of each entry's newest (:func:`select_versions`)."""
    profiles = sorted(set(df["profile"])) if len(df) else []
    if profile is None:
        if len(profiles) > 1:
            raise UsageError(
                f"the leaderboard holds several profiles ({', '.join(profiles)}); choose one with --profile"
            )
        profile = profiles[0] if profiles else "full"
    df = df[df["profile"] == profile]
    measured = df["origin"] == "measured"
    row_versions = [
        (str(k), str(n), str(s)) if m else None
        for k, n, s, m in zip(df["kind"], df["submission"], df["submission_sha256"], measured)
    ]
    keys = {v: VersionKey.of(*v) for v in set(row_versions) if v is not None} if retired else {}
    which = [retired.get(keys[v]) if retired and v is not None else None for v in row_versions]
    hidden = pd.Series([w is not None for w in which], index=df.index, dtype=bool)
    gone = sorted({w for w, h in zip(which, hidden) if h and w is not None}, key=lambda r: (r.submission, r.sha256))
    df = df[~hidden]
    profile_archs = PROFILES[profile].archs if profile in PROFILES else ()
    seeds = PROFILES[profile].seeds if profile in PROFILES else ()
    archs = aggregate.phase_archs(df, phase, profile_archs)
    if arch is not None:
        if arch not in archs:
            raise UsageError(
                f"no architecture {arch!r} in the {phase} phase of profile {profile}: choose one of {', '.join(archs)}"
            )
        archs = [arch]
    groups = board.groups(df, phase, archs, seeds, select_versions(df, versions))
    entries = [e for g in groups for e in g.entries]
    refs = published.reproductions(published.reference_standings(df, archs, phase), entries)
    return Report(
        profile=profile,
        phase=phase,
        archs=archs,
        entries=entries,
        references=refs,
        seeds=seeds,
        controls=[g.tuned for g in groups if g.tuned is not None] + static_sweep.best_static(entries),
        retired=gone,
        only_arch=arch,
        power={g.settings: g.power for g in groups},
        family_size={g.settings: g.family_size for g in groups},
    )


def seed_list(seeds: Iterable[object]) -> str:
    """Seeds as every view writes them: ``42/123/456``."""
    return "/".join(str(x) for x in seeds)


def select_versions(df: pd.DataFrame, versions: Sequence[str]) -> dict[tuple[str, str], str]:
    """``NAME@SHA`` (a prefix of the sha256, as the views and `harness runs` show it) -> ``(kind, name)
    -> sha256``: the version each named entry ranks instead of its newest. A name that matches no
    version, or a prefix that matches several, is a :class:`UsageError` listing the versions."""
    measured = df[df["origin"] == "measured"]
    out: dict[tuple[str, str], str] = {}
    for item in versions:
        name, _, sha = item.partition("@")
        name = name.strip()
        if not sha:
            raise UsageError(f"--version {item!r}: name one version as NAME@SHA (e.g. {name or 'x.py'}@1a2b3c4d)")
        rows = measured[measured["submission"].isin([name, f"{name}.py"])]
        found = sorted(set(zip(rows["kind"], rows["submission"], rows["submission_sha256"])))
        chosen = [(k, n, v) for k, n, v in found if v.startswith(sha.strip().lower())]
        if len(chosen) != 1:
            listed = ", ".join(f"{n}@{v[:8]}" for _, n, v in found) or "none"
            raise UsageError(f"--version {item!r} names {len(chosen)} versions; the versions of {name}: {listed}")
        kind, n, v = chosen[0]
        out[(kind, n)] = v
    return out


# ---- cells ------------------------------------------------------------------------------------------
