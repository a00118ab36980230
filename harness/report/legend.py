"""What the leaderboard's numbers mean, as notes under its tables: only about what the view shows
(no word on tests where nothing is tested, on spread with one seed, on cost where no cost is shown).
:func:`legend` for the detailed formats, :func:`short_legend` for the compact terminal table."""

from __future__ import annotations

from harness.report.model import HEADLINE, Report, seed_list
from harness.results.aggregate import LEVEL, MIN_COST_SECONDS, REFERENCE_BASELINE, TEST_NAME
from harness.results.family import ALPHA, MARGIN, PRIMARY_SHARE, Power
from harness.results.published import published
from harness.results.static_sweep import CONTROL_LABEL, SWEEP, TUNED_LABEL

_REF = REFERENCE_BASELINE.removesuffix(".py")


def _seeds(report: Report) -> str:
    return seed_list(report.seeds)


def _several_seeds(report: Report) -> bool:
    return len(report.seeds) != 1


def _has(report: Report, what: str) -> bool:
    rows = report.entries + report.controls
    return {
        "tuned": any(e.tuned_label for e in rows),
        "tuned line": any(c.label.startswith(TUNED_LABEL) for c in report.controls),
        "best line": any(c.label.startswith(CONTROL_LABEL) for c in report.controls),
        "cost": any(e.cost is not None for e in rows),
        "diff": any(s.diff is not None for e in rows for s in e.archs.values()),
        "improvement": any(e.improvement is not None for e in rows),
        "groups": len({e.settings for e in report.entries}) > 1,
        "versions": any(not e.current for e in report.entries),
        "ranges": report.tested and any(e.rank_range and e.rank_range[0] != e.rank_range[1] for e in rows),
    }[what]


def metric_line(report: Report) -> str:
    seeds = f"the seeds ({_seeds(report)})" if report.seeds else "the seeds"
    spread = (
        f"mean ± sample std (ddof = 1) over {seeds}, n = seeds counted"
        if _several_seeds(report)
        else f"one seed ({_seeds(report)})"
        + (": no spread, no interval, nothing is tested" if not report.tested else "; the tests pair extra seeds too")
    )
    return (
        f"profile {report.profile}, phase {report.phase}; best fine-class test accuracy (%) per architecture (the "
        f"task's metric: the best of every epoch's test evaluation, so optimistic): {spread}; each seed counts by "
        "its latest attempt (failed: its latest attempt failed; retried: the seed has more than one attempt, each a "
        "row). final ARCH: the mean of the last epoch's fine test accuracy, which no choice of epoch flatters."
    )


def score_line(report: Report) -> str:
    interval = (
        f" [its {LEVEL:.0%} t-interval over the per-seed scores, each seed's geometric mean across the architectures]"
        if _several_seeds(report)
        else ""
    )
    return (
        f"score = geometric mean over the architectures of the per-architecture means{interval}; 'incomplete' = "
        f"not every protocol seed{f' ({_seeds(report)})' if report.seeds else ''} has an ok latest attempt on every "
        "architecture, or a seed's latest attempt failed: shown, not scored, ranked or tested."
        + (f" Ranked on {report.only_arch} alone (--arch)." if report.only_arch else "")
    )


def tests_line(report: Report) -> str:
    sizes = sorted(set(report.family_size.values()) - {0})
    return (
        f"Δ score: the difference from {_REF} in per-seed score (each seed's geometric mean over the architectures"
        f"{'' if report.only_arch is None else '; here its accuracy'}), mean over the seeds both have, [its "
        f"{LEVEL:.0%} t-interval]; {TEST_NAME} (df = seeds - 1; the seed is the independent unit, so it holds "
        "whatever the correlation of a seed's runs across architectures). p = raw; adj = adjusted with Holm's "
        f"weighted method over the group's family ({' or '.join(map(str, sizes))} tests): primary tests (each "
        f"ranked entry against {_REF} and against the tuned static weight) share {PRIMARY_SHARE:.0%} of alpha when "
        "there are pairwise tests, the pairs of other ranked entries the rest. "
        f"* = adjusted p < {ALPHA}. Only ranked entries are tested; no marker does not mean no difference."
    )


def power_lines(report: Report) -> list[str]:
    out = []
    for group, p in report.power.items():
        if p is None or p.vs_ref is None:
            continue
        where = "" if group == HEADLINE else f" [{group}]"
        out.append(power_text(p, where))
    return out


def power_text(p: Power, where: str = "") -> str:
    pair = f"; two ranked entries are told apart from {p.pair:.2f}" if p.pair is not None else ""
    return (
        f"What this board can detect{where} (80% power, at the level Holm's first step gives one test): a true "
        f"difference from {_REF} of {p.vs_ref:.2f} points{pair} (with {p.seeds} seeds, the observed std "
        f"{p.sd:.2f} of the per-seed differences, {p.tests} tests). More seeds shrink it: `harness evaluate FILE "
        "--seed N` adds seeds beyond the protocol's (the tests pair them; the score stays on the protocol's)."
    )


def legend(report: Report) -> list[str]:
    ref = _REF
    lines = [metric_line(report), score_line(report)]
    if _has(report, "groups"):
        lines.append(
            f"Comparison groups: entries are ranked, compared with {ref} and tested only within their settings; the "
            f"first tables are the task's ({HEADLINE}, shared network), each other precision, topology, compile or "
            "deterministic setting has its own table."
        )
    if _has(report, "diff") and _several_seeds(report):
        lines.append(
            f"Δ ARCH: per architecture, the mean over paired seeds of the difference from {ref} [its {LEVEL:.0%} "
            "t-interval]: descriptive (its unadjusted p is in the csv and json exports); it is not tested, since a "
            "test per architecture has seeds - 1 degrees of freedom and would take slots of the family."
        )
    elif _has(report, "diff"):
        lines.append(f"Δ ARCH: per architecture, the difference from {ref} on the seed both have.")
    if report.tested:
        lines.append(tests_line(report))
    if _has(report, "tuned"):
        lines.append(
            f"vs tuned static weight: the per-seed score against {TUNED_LABEL} (for each seed, among the static "
            f"weights measured, the w with the best score on the other seeds, scored on that seed), paired by seed: "
            f"better / worse = the difference test's adjusted p < {ALPHA}; equivalent = the two one-sided tests "
            f"(TOST) show it within ±{MARGIN} points (adjusted p < {ALPHA}); inconclusive = neither."
        )
    if _has(report, "improvement"):
        lines.append(
            f"P(>EW): the probability of improvement over {ref} (rliable's: per architecture the share of (run, run "
            "of equal weighting) pairs it wins, averaged over the architectures): descriptive, not a test."
        )
    if _has(report, "ranges"):
        lines.append(
            "rank (a-b): a = 1 + the entries significantly above it, b = the ranked entries' count - those "
            "significantly below it (its significant results only)."
        )
    lines += power_lines(report)
    if _has(report, "cost"):
        lines.append(
            f"cost: training time over {ref}'s: every epoch of each counted run (a resumed run counts all its "
            "epochs), summed over the (architecture, seed) runs both have on the same device type, sandbox, "
            f"channels_last and torch version; shown only when those runs took {MIN_COST_SECONDS:.0f} s or more. A "
            "loaded machine or runs sharing it (--jobs) inflate it; never part of the score."
        )
    lines += control_lines(report)
    return lines + notes(report)


def control_lines(report: Report) -> list[str]:
    out = []
    if _has(report, "tuned line"):
        out.append(
            f"{TUNED_LABEL}: the comparator the 'vs tuned' column tests against; its accuracies are those of the "
            "weight chosen for each seed (w: the weights, seed by seed); not ranked."
        )
    if _has(report, "best line"):
        out.append(
            f"{CONTROL_LABEL}: descriptive: on each architecture, the best of the static-weight sweep L = L_fine + w "
            f"L_coarse (w in {', '.join(f'{w:g}' for w in sorted(SWEEP.values()))}) that is measured; chosen on the "
            "test accuracy shown, so it flatters the sweep: not ranked, not tested."
        )
    return out


def notes(report: Report) -> list[str]:
    """What every format says under its tables: unranked entries, versions, published rows, retired ones."""
    return unranked_note(report) + versions_note(report) + published_notes(report) + retired_note(report)


def short_legend(report: Report, detailed_width: int | None = None) -> list[str]:
    """What the compact table's marks mean, in a few lines; ``detailed_width``: the columns the
    detailed table would need."""
    parts = [
        f"profile {report.profile}, phase {report.phase}. Each cell: best fine-class test accuracy (%)"
        + (", mean±std over seeds" if _several_seeds(report) else f", one seed ({_seeds(report)})")
        + (
            "; under it the final epoch's (mean)"
            if any(s.final for e in report.entries for s in e.archs.values())
            else ""
        )
        + (f"; then Δ, the difference from {_REF} (per architecture: descriptive)" if _has(report, "diff") else "")
        + ". f/m/r = a seed failed/is missing/was retried. score = geometric mean over the architectures "
        "(- = incomplete: not ranked)."
    ]
    if report.tested:
        parts.append(
            f"Δ under the score: in per-seed score, paired by seed; * = significant after Holm's weighted adjustment "
            f"(adjusted p < {ALPHA}); ? = not testable."
            + (" # = rank; under it the ranks its significant results allow." if _has(report, "ranges") else "")
        )
    if _has(report, "tuned"):
        parts.append(f"tuned: against the tuned static weight (±{MARGIN} points = equivalent).")
    if _has(report, "cost"):
        parts.append(f"cost = training time / {_REF}'s (same device type and sandbox; a loaded machine inflates it).")
    if report.controls:
        parts.append("The static-weight lines are not ranked.")
    if _has(report, "groups"):
        parts.append("Ranks, Δ and * are within one table's settings (the first tables: the task's).")
    where = "--format markdown, csv, json or html"
    if detailed_width is not None:
        where = f"a terminal of {detailed_width} columns, or {where}"
    what = "Intervals and p-values" if report.tested else "The detailed table"
    return [" ".join(parts), f"{what}: {where}."] + power_lines(report) + notes(report)


def unranked_note(report: Report) -> list[str]:
    """Why current versions are listed without a rank, and how to rank on what they have."""
    unranked = [e for e in report.entries if e.rank is None and e.current]
    if not unranked:
        return []
    seeds = _seeds(report) or "the protocol's seeds"
    where = f"on {report.only_arch}" if report.only_arch else f"on every architecture ({', '.join(report.archs)})"
    with_some = {a for e in unranked for a, s in e.archs.items() if s.complete}
    hint = (
        f" `harness leaderboard --arch {sorted(with_some)[0]}` ranks on one architecture."
        if with_some and not report.only_arch and len(report.archs) > 1
        else ""
    )
    return [
        f"{len(unranked)} entr{'y is' if len(unranked) == 1 else 'ies are'} not ranked: an entry is ranked when "
        f"every seed ({seeds}) has an ok run {where} and no seed's latest attempt failed. They follow the ranked "
        "ones, listed by what they have: the most architectures with ok runs, then the geometric mean of their means."
        + hint
    ]


def versions_note(report: Report) -> list[str]:
    if not _has(report, "versions"):
        return []
    return [
        "An entry with several file versions is ranked by its newest (the one first run last); the others are "
        "listed after the ranked lines, dated, never ranked or tested. `--version NAME@SHA` ranks another version "
        "in this view; `harness retire NAME@SHA` hides one from every view."
    ]


def retired_note(report: Report) -> list[str]:
    """Which versions this view hides, and how to show them again."""
    if not report.retired:
        return []
    items = "; ".join(
        f"{r.submission} @{r.sha256[:8]} (since {r.at[:10]}{': ' + r.reason if r.reason else ''})"
        for r in report.retired
    )
    return [f"retired, not shown: {items}. `harness retire NAME@SHA --restore` shows a version again."]


def published_notes(report: Report) -> list[str]:
    """What produced each published baseline row and what reproduces it here (once per name), one line
    for the rows nothing here can reproduce, and why some published rows have no score."""
    seen: dict[str, str] = {}
    others = False
    for e in report.references:
        what = published(e.submission) if e.kind == "reference" else None
        if what is not None and what.baseline:
            seen.setdefault(e.label, f"{e.label}: {what.note}; reproduced by baselines/{what.baseline}")
        elif e.kind == "reference":
            others = True
    lines = list(seen.values())
    if others:
        lines.append(
            "the other published rows: loss strategies whose code is not published; nothing here reproduces them"
        )
    if any(e.kind == "reference" and e.single_seed_score is not None for e in report.references):
        lines.append("a published row of one seed shows its score as '1 seed: x', apart from the means of several")
    phases = sorted({e.phase for e in report.references if e.kind == "reference" and e.phase != report.phase})
    if phases:
        lines.append(
            f"published rows of the {'/'.join(phases)} phase have no score here: they were scored on that phase's "
            f"architectures (`--phase {phases[0]}` scores them)"
        )
    if any(e.kind == "reproduction" for e in report.references):
        lines.append(
            "measured here: the reproduction's own runs (the task's settings), beside the published numbers; "
            "the published seeds and hardware differ, so read the difference as a check, not a test"
        )
    return lines
