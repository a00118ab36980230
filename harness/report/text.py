"""The leaderboard as text: Markdown, and the cells every format shares (the terminal table is
:mod:`~harness.report.terminal`, the legend :mod:`~harness.report.legend`, CSV and JSON
:mod:`~harness.report.data`)."""

from __future__ import annotations

from harness.report.legend import legend
from harness.report.model import Report, Section, seed_list
from harness.results.aggregate import ArchStats, Comparison, Standing
from harness.util.text import markdown_text

__all__ = ["fmt_comparison", "fmt_diff", "fmt_rank", "fmt_score", "fmt_stats", "fmt_tuned", "render_markdown"]


def fmt_stats(s: ArchStats, note: str = "") -> str:
    """``61.00 ± 1.00 (n=3)``, with the seeds that failed, are missing or were retried, the extra
    seeds the tests also pair, and ``note``."""
    problems = (
        ([f"failed {seed_list(s.failed_seeds)}"] if s.failed_seeds else [])
        + ([f"missing {seed_list(s.missing)}"] if s.missing else [])
        + ([f"retried {seed_list(s.retried)}"] if s.retried else [])
        + ([f"extra seeds {seed_list(tuple(sorted(s.extra)))}"] if s.extra else [])
        + ([note] if note else [])
    )
    if s.mean is None:
        return "; ".join(problems) or "-"
    spread = f" ± {s.std:.2f}" if s.std is not None else ""
    return f"{s.mean:.2f}{spread} (n={s.n}{''.join('; ' + p for p in problems)})"


def fmt_diff(s: ArchStats) -> str:
    """``+1.37 [+0.57, +2.17]``: the descriptive per-architecture difference from equal weighting and
    its 95% interval (its unadjusted p-value is in the exports; no claim is read from it)."""
    if s.diff is None:
        return ""
    interval = f" [{s.ci[0]:+.2f}, {s.ci[1]:+.2f}]" if s.ci is not None else f" ({s.no_test})" if s.no_test else ""
    return f"{s.diff:+.2f}{interval}"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"={p:.3f}"


def fmt_comparison(c: Comparison | None) -> str:
    """``+1.28 [+0.98, +1.59] (p=0.003, adj 0.012) *``: a difference in score, its 95% interval, the raw
    and the adjusted p-value; ``*`` only when the adjusted one is below alpha. A comparison outside the
    family (an entry not ranked) shows its difference and interval only."""
    if c is None or c.diff is None:
        return ""
    interval = f" [{c.ci[0]:+.2f}, {c.ci[1]:+.2f}]" if c.ci is not None else ""
    if c.p_value is not None:
        adjusted = f", adj {_p(c.p_adjusted).lstrip('=')}" if c.p_adjusted is not None else ""
        p = f" (p{_p(c.p_value)}{adjusted})"
    else:
        p = f" (no test: {c.no_test or f'{c.n_pairs} paired seeds'})"
    return f"{c.diff:+.2f}{interval}{p}{' *' if c.significant else ''}"


def fmt_tuned(e: Standing) -> str:
    """``better: +0.85 [+0.41, +1.29] (adj p 0.012)``: the label against the tuned static weight, the
    difference in score and its interval, and the adjusted p-value that decided it (both when none did)."""
    c = e.vs_tuned
    if not e.tuned_label or c is None or c.diff is None:
        return ""
    interval = f" [{c.ci[0]:+.2f}, {c.ci[1]:+.2f}]" if c.ci is not None else ""
    diff = f"adj p {_p(c.p_adjusted).lstrip('=')}" if c.p_adjusted is not None else ""
    eq = f"equivalence adj p {_p(c.p_equivalent_adjusted).lstrip('=')}" if c.p_equivalent_adjusted is not None else ""
    why = {"better": diff, "worse": diff, "equivalent": eq}.get(e.tuned_label, "; ".join(x for x in (diff, eq) if x))
    return f"{e.tuned_label}: {c.diff:+.2f}{interval}" + (f" ({why})" if why else f" (no test: {c.no_test})")


def fmt_rank(e: Standing, *, stacked: bool = False, ranges: bool = True) -> str:
    """``2``, or ``2 (1-4)`` when the significant results allow other ranks (``stacked``: the range on a
    second line, ``2\\n1-4``); ``ranges`` False: the rank alone (nothing was tested, or one entry)."""
    if e.rank is None:
        return ""
    if not ranges or e.rank_range is None or e.rank_range[0] == e.rank_range[1]:
        return str(e.rank)
    lo, hi = e.rank_range
    return f"{e.rank}\n{lo}-{hi}" if stacked else f"{e.rank} ({lo}-{hi})"


def show_ranges(report: Report) -> bool:
    """Rank ranges mean something when some test was run and more than one entry is ranked."""
    return report.tested and sum(e.rank is not None for e in report.entries) > 1


def fmt_score(e: Standing) -> str:
    """``66.80 [66.12, 67.49]``: the score and its 95% interval (over the per-seed scores); a published
    row of one seed: ``1 seed: 68.60`` (not a mean of several)."""
    if e.single_seed_score is not None:
        return f"1 seed: {e.single_seed_score:.2f}"
    if e.score is None:
        return "incomplete" if e.kind not in ("reference", "control") else ""
    return f"{e.score:.2f}" + (f" [{e.score_ci[0]:.2f}, {e.score_ci[1]:.2f}]" if e.score_ci is not None else "")


def fmt_cost(e: Standing) -> str:
    """``1.85x (cpu, none)``: training time over equal weighting's on the same device and settings."""
    return f"{e.cost:.2f}x ({e.cost_on})" if e.cost is not None and e.cost_on else fmt_cost_short(e)


def fmt_cost_short(e: Standing) -> str:
    return f"{e.cost:.2f}x" if e.cost is not None else ""


def fmt_final(s: ArchStats) -> str:
    return f"{s.final_mean:.2f}" if s.final_mean is not None else ""


def fmt_improvement(e: Standing) -> str:
    return f"{e.improvement:.2f}" if e.improvement is not None else ""


def _columns(report: Report) -> list[str]:
    cols = ["rank", "entry"]
    for arch in report.archs:
        cols += [arch, f"final {arch}", f"Δ {arch}"]
    return cols + ["Δ score", "vs tuned static weight", "P(>EW)", "score", "cost"]


def _cells(report: Report, e: Standing) -> list[str]:
    cells = [fmt_rank(e, ranges=show_ranges(report)), e.display]
    for arch in report.archs:
        s = e.archs[arch]
        cells += [fmt_stats(s, e.picked.get(arch, "")), fmt_final(s), fmt_diff(s)]
    return cells + [fmt_comparison(e.vs_ref), fmt_tuned(e), fmt_improvement(e), fmt_score(e), fmt_cost(e)]


def _source(e: Standing) -> str:
    """A published row's source and what produced it; a reproduction's origin."""
    return f"{e.source}: {e.note}" if e.note else e.source


def section_table(report: Report, section: Section, *, source: bool = True) -> tuple[list[str], list[list[str]]]:
    """The header and cells of one section as the detailed formats show it: every interval and
    p-value; a column no row of the section fills is left out (rank and entry stay); published
    rows add their ``source`` unless ``source`` is False."""
    kind, rows = section.kind, section.rows
    cols = _columns(report) + (["source"] if kind == "reference" and source else [])
    cells = [_cells(report, e) + ([_source(e)] if kind == "reference" and source else []) for e in rows]
    keep = [i for i, c in enumerate(cols) if c in ("rank", "entry") or any(row[i] for row in cells)]
    return [cols[i] for i in keep], [[row[i] for i in keep] for row in cells]


# ---- markdown ---------------------------------------------------------------------------------------


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
