"""The aggregated leaderboard of one profile and phase, as every format renders it.

Sections, always in this order and never mixed: submissions, baselines (both measured here
and ranked together), and published numbers reported elsewhere (full profile only, unranked,
outside every aggregate and test).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from harness import aggregate, static_sweep
from harness.aggregate import Standing
from harness.errors import UsageError
from harness.leaderboard.retired import Retired
from harness.protocol import PROFILES, Phase

SECTIONS = (
    ("submission", "submissions"),
    ("baseline", "baselines"),
    ("reference", "reported elsewhere (published numbers, not measured here)"),
)


@dataclass(frozen=True)
class Report:
    profile: str
    phase: Phase
    archs: list[str]
    entries: list[Standing]  # measured, ranked
    references: list[Standing]
    seeds: tuple[int, ...] = ()  # the protocol's seeds: a complete entry has each, ok, on every architecture
    controls: list[Standing] = field(default_factory=list)  # best static weight: shown under the baselines
    retired: list[Retired] = field(default_factory=list)  # versions hidden from this view (harness retire)

    def section(self, kind: str) -> list[Standing]:
        """The rows of one section, in order; the baselines' ends with the control lines."""
        if kind == "reference":
            return self.references
        return [e for e in self.entries if e.kind == kind] + (self.controls if kind == "baseline" else [])


def build(
    df: pd.DataFrame,
    phase: Phase,
    profile: str | None = None,
    retired: Mapping[tuple[str, str, str], Retired] | None = None,
) -> Report:
    """Aggregate the leaderboard rows of one profile and phase. With several profiles in the
    file, ``profile`` must name one. The measured rows of ``retired`` versions (by kind, name and
    sha256) are left out, as if never appended; the report lists them."""
    profiles = sorted(set(df["profile"])) if len(df) else []
    if profile is None:
        if len(profiles) > 1:
            raise UsageError(
                f"the leaderboard holds several profiles ({', '.join(profiles)}); choose one with --profile"
            )
        profile = profiles[0] if profiles else "full"
    df = df[df["profile"] == profile]
    events = list((retired or {}).values())
    which = [
        next((r for r in events if r.hides(k, n, s)), None)
        for k, n, s in zip(df["kind"], df["submission"], df["submission_sha256"])
    ]
    hidden = (df["origin"] == "measured") & pd.Series([w is not None for w in which], index=df.index, dtype=bool)
    gone = sorted({w for w, h in zip(which, hidden) if h and w is not None}, key=lambda r: (r.submission, r.sha256))
    df = df[~hidden]
    profile_archs = PROFILES[profile].archs if profile in PROFILES else ()
    seeds = PROFILES[profile].seeds if profile in PROFILES else ()
    archs = aggregate.phase_archs(df, phase, profile_archs)
    refs = aggregate.reference_standings(df, archs)
    entries = aggregate.standings(df, phase, archs, seeds)
    return Report(
        profile=profile,
        phase=phase,
        archs=archs,
        entries=entries,
        references=refs,
        seeds=seeds,
        controls=static_sweep.best_static(entries),
        retired=gone,
    )


# ---- cells ------------------------------------------------------------------------------------------
