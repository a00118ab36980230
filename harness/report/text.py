"""The leaderboard as text: Markdown and CSV, and the cells and legend every format shares (the
terminal table is :mod:`~harness.report.terminal`)."""

from __future__ import annotations

from harness.aggregate import ALPHA, CORRECTION, LEVEL, REFERENCE_BASELINE, TEST_NAME, ArchStats, Standing
from harness.published import published
from harness.report.model import HEADLINE, Report, Section
from harness.static_sweep import CONTROL_LABEL, SWEEP
from harness.text import markdown_text


def _seed_list(seeds: tuple[int, ...]) -> str:
    return "/".join(str(x) for x in seeds)


def fmt_stats(s: ArchStats, note: str = "") -> str:
    """``61.00 ± 1.00 (n=3)``, with the seeds that failed, are missing or were retried, and ``note``."""
    problems = (
        ([f"failed {_seed_list(s.failed_seeds)}"] if s.failed_seeds else [])
        + ([f"missing {_seed_list(s.missing)}"] if s.missing else [])
        + ([f"retried {_seed_list(s.retried)}"] if s.retried else [])
        + ([note] if note else [])
    )
    if s.mean is None:
        return "; ".join(problems) or "-"
    spread = f" ± {s.std:.2f}" if s.std is not None else ""
    return f"{s.mean:.2f}{spread} (n={s.n}{''.join('; ' + p for p in problems)})"


def fmt_diff(s: ArchStats) -> str:
    """``+1.37 [+0.57, +2.17] (p=0.018, Holm 0.126) *``: the paired difference from equal weighting,
    its 95% interval, the raw and the adjusted p-value; ``*`` only when the adjusted one is below ALPHA."""
    if s.diff is None:
        return ""
    interval = f" [{s.ci[0]:+.2f}, {s.ci[1]:+.2f}]" if s.ci is not None else ""
    if s.p_value is not None:
        p = f"p{_p(s.p_value)}" + (f", {CORRECTION} {_p(s.p_adjusted).lstrip('=')}" if s.p_adjusted is not None else "")
    else:
        p = f"no test: {s.no_test or f'{s.n_pairs} paired seeds'}"
    return f"{s.diff:+.2f}{interval} ({p}){' *' if s.significant else ''}"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"={p:.3f}"


def fmt_rank(e: Standing, *, stacked: bool = False) -> str:
    """``2``, or ``2 (1-4)`` when the score intervals allow other ranks (``stacked``: the range on a
    second line, ``2\n1-4``)."""
    if e.rank is None:
        return ""
    if e.rank_range is None or e.rank_range[0] == e.rank_range[1]:
        return str(e.rank)
    lo, hi = e.rank_range
    return f"{e.rank}\n{lo}-{hi}" if stacked else f"{e.rank} ({lo}-{hi})"


def fmt_score(e: Standing) -> str:
    """``66.80 [66.12, 67.49]``: the score and its 95% interval (over the per-seed scores)."""
    if e.score is None:
        return "incomplete" if e.kind != "reference" else ""
    return f"{e.score:.2f}" + (f" [{e.score_ci[0]:.2f}, {e.score_ci[1]:.2f}]" if e.score_ci is not None else "")


def unranked_note(report: Report) -> list[str]:
    """Why entries are listed without a rank, and how to rank on what they have."""
    unranked = [e for e in report.entries if e.rank is None]
    if not unranked:
        return []
    seeds = "/".join(str(x) for x in report.seeds) or "the protocol's seeds"
    where = f"on {report.only_arch}" if report.only_arch else f"on every architecture ({', '.join(report.archs)})"
    with_some = {a for e in unranked for a, s in e.archs.items() if s.complete}
    hint = (
        f" `harness leaderboard --arch {sorted(with_some)[0]}` ranks on one architecture."
        if with_some and not report.only_arch and len(report.archs) > 1
        else ""
    )
    return [
        f"{len(unranked)} entr{'y is' if len(unranked) == 1 else 'ies are'} not ranked: an entry is ranked when "
        f"every seed ({seeds}) has an ok run {where}. They follow the ranked ones, listed by what they have: the "
        "most architectures with ok runs, then the geometric mean of their means." + hint
    ]


def fmt_cost(e: Standing) -> str:
    """``1.85x``: training time over equal weighting's on the same device and settings."""
    return f"{e.cost:.2f}x ({e.cost_on})" if e.cost is not None and e.cost_on else fmt_cost_short(e)


def fmt_cost_short(e: Standing) -> str:
    return f"{e.cost:.2f}x" if e.cost is not None else ""


def fmt_final(s: ArchStats) -> str:
    return f"{s.final_mean:.2f}" if s.final_mean is not None else ""


def retired_note(report: Report) -> list[str]:
    """Which versions this view hides, and how to show them again."""
    if not report.retired:
        return []
    items = "; ".join(
        f"{r.submission} @{r.sha256[:8]} (since {r.at[:10]}{': ' + r.reason if r.reason else ''})"
        for r in report.retired
    )
    return [f"retired, not shown: {items}. `harness retire NAME@SHA --restore` shows a version again."]


def legend(report: Report) -> list[str]:
    seeds = f" ({_seed_list(report.seeds)})" if report.seeds else ""
    return (
        [
            f"profile {report.profile}, phase {report.phase}; best fine-class test accuracy (%) per architecture (the "
            "task's metric: the best of every epoch's test evaluation, so optimistic): mean ± sample std "
            "(ddof = 1) over seeds, n = seeds counted; each seed counts by its latest attempt (failed: its latest "
            "attempt failed; retried: the seed has more than one attempt, each a row); runs of seeds outside the "
            "profile's are not counted. final ARCH: the mean of the last epoch's fine test accuracy, which no "
            "choice of epoch flatters.",
            "score = geometric mean over the architectures of the per-architecture means "
            f"[its {LEVEL:.0%} t-interval over the per-seed scores, each seed's geometric mean across the "
            "architectures]; 'incomplete' = not every protocol seed"
            f"{seeds} has an ok latest attempt on every architecture: shown, not scored or ranked."
            + (f" Ranked on {report.only_arch} alone (--arch)." if report.only_arch else ""),
            f"Comparison groups: entries are ranked, compared with {REFERENCE_BASELINE.removesuffix('.py')} and "
            f"adjusted only within their settings; the first tables are the task's ({HEADLINE}, shared network), "
            "each other precision, topology, compile or deterministic setting has its own table.",
            f"Δ vs {REFERENCE_BASELINE.removesuffix('.py')}: mean over paired seeds (seeds both have) of the per-seed "
            f"difference, [its {LEVEL:.0%} t-interval]; {TEST_NAME} (df = n - 1); Δ pooled: the same over paired "
            f"(architecture, seed). {CORRECTION}'s method adjusts every p-value of a comparison group as one family "
            "(each entry against it per architecture and pooled, and every pair of ranked entries, pooled): "
            f"* = adjusted p < {ALPHA}. With n = 3 "
            "seeds (2 df) only large, consistent differences can reach it; no marker does not mean no difference.",
            "rank (a-b): the ranks that no significant pairwise result contradicts (a = 1 + the entries significantly "
            "above it, b = the group's count - those significantly below it); an entry significantly above another "
            "never has a range reaching that entry's rank.",
        ]
        + (
            [
                f"cost: training time over {REFERENCE_BASELINE.removesuffix('.py')}'s: every epoch of each counted run "
                "(a resumed run counts all its epochs), summed over the (architecture, seed) runs both have on the "
                "same device type, sandbox, channels_last and torch version, with the same settings. A loaded "
                "machine or runs sharing it (--jobs) inflate it, and the rows do not say so; shown, never part of "
                "the score."
            ]
            if any(e.cost is not None for e in report.entries)
            else []
        )
        + (
            [
                f"{CONTROL_LABEL}: on each architecture, the best of the static-weight sweep L = L_fine + w L_coarse "
                f"(w in {', '.join(f'{w:g}' for w in sorted(SWEEP.values()))}) that is measured; the weight is "
                "chosen on the test accuracy shown, so the line flatters it: not ranked, not tested."
            ]
            if report.controls
            else []
        )
        + unranked_note(report)
        + published_notes(report)
        + retired_note(report)
    )


def _columns(report: Report) -> list[str]:
    cols = ["rank", "entry"]
    for arch in report.archs:
        cols += [arch, f"final {arch}", f"Δ {arch}"]
    return cols + ["Δ pooled", "score", "cost"]


def _cells(report: Report, e: Standing) -> list[str]:
    cells = [fmt_rank(e), e.display]
    for arch in report.archs:
        s = e.archs[arch]
        cells += [fmt_stats(s, e.picked.get(arch, "")), fmt_final(s), fmt_diff(s)]
    return cells + [fmt_diff(e.pooled) if e.pooled is not None else "", fmt_score(e), fmt_cost(e)]


def _source(e: Standing) -> str:
    """A published row's source and what produced it; a reproduction's origin."""
    return f"{e.source}: {e.note}" if e.note else e.source


def published_notes(report: Report) -> list[str]:
    """What produced each published baseline row and what reproduces it here (once per name), and
    one line for the rows nothing here can reproduce."""
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
    if any(e.kind == "reproduction" for e in report.references):
        lines.append(
            "measured here: the reproduction's own runs (the task's settings), beside the published numbers; "
            "the published seeds and hardware differ, so read the difference as a check, not a test"
        )
    return lines


def section_table(report: Report, section: Section, *, source: bool = True) -> tuple[list[str], list[list[str]]]:
    """The header and cells of one section as the detailed formats show it: every interval and
    p-value; a column no row of the section fills is left out (rank and entry stay); published
    rows add their ``source`` unless ``source`` is False."""
    kind, rows = section.kind, section.rows
    cols = _columns(report) + (["source"] if kind == "reference" and source else [])
    cells = [_cells(report, e) + ([_source(e)] if kind == "reference" and source else []) for e in rows]
    keep = [i for i, c in enumerate(cols) if c in ("rank", "entry") or any(row[i] for row in cells)]
    return [cols[i] for i in keep], [[row[i] for i in keep] for row in cells]


# ---- markdown / csv -------------------------------------------------------------------------------------


def render_markdown(report: Report) -> str:
    out = [f"# Leaderboard ({report.profile}, {report.phase} phase)", ""]
    for section in report.sections():
        cols, rows = section_table(report, section)
        title = section.title
        out += [
            f"## {title[0].upper()}{title[1:]}",
            "",
            "| " + " | ".join(cols) + " |",
            "|" + "|".join("---" if c in ("entry", "source") else "---:" for c in cols) + "|",
        ]
        texts = [i for i, c in enumerate(cols) if c in ("entry", "source")]  # from the rows: literal text
        for cells in rows:
            out.append(
                "| "
                + " | ".join(markdown_text(c) if i in texts else c.replace("|", "\\|") for i, c in enumerate(cells))
                + " |"
            )
        out.append("")
    return "\n".join(out + [f"- {line}" for line in legend(report)]) + "\n"
