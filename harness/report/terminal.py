"""The leaderboard in the terminal. When the detailed table (every interval and p-value, the
same cells as Markdown) fits the terminal's width it is printed as is; otherwise a compact one
is, up to three lines per entry, that reads well at 80 columns: the accuracy line, under it the
final epoch's, then the difference from equal weighting (under the score: tested, with a
one-character marker). A short legend says what the marks mean and how wide the detailed table
is. Published rows name their source in a numbered note."""

from __future__ import annotations

from collections.abc import Collection

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from harness.protocol import VersionKey
from harness.report.legend import legend, short_legend
from harness.report.model import Report, Section
from harness.report.text import fmt_cost_short, fmt_final, fmt_rank, section_table, show_ranges
from harness.results.aggregate import ArchStats, Comparison, Standing


def render_table(report: Report, console: Console, *, highlight: Collection[VersionKey] = ()) -> None:
    """Print the sections of ``report``; rows of the file versions in ``highlight`` in bold."""
    notes = {
        src: i + 1 for i, src in enumerate(dict.fromkeys(e.source for e in report.references if e.kind == "reference"))
    }
    sections = report.sections()
    detailed = [_detailed(report, section, notes, highlight) for section in sections]
    wide = console.options.update_width(10_000)  # measure unclamped: the width the table wants
    fits = all(Measurement.get(console, wide, t).maximum <= console.width for t in detailed)
    tables = detailed if fits else [_compact(report, section, notes, highlight) for section in sections]
    for table in tables:
        console.print(table)
    for source, i in notes.items():
        console.print(f"\\[{i}] {escape(source)}", soft_wrap=False)
    if not report.entries:
        console.print(
            f"no measured rows for profile {escape(report.profile)}, phase {report.phase} yet: `harness "
            "evaluate FILE` and `harness baselines` add them"
        )
    needed = max((Measurement.get(console, wide, t).maximum for t in detailed), default=0)
    for line in legend(report) if fits else short_legend(report, needed):
        console.print(f"[dim]{escape(line)}[/]", soft_wrap=False)  # wrapped at the width, piped too


def _label(e: Standing, notes: dict[str, int]) -> str:
    return f"{e.label} [{notes[e.source]}]" if e.kind == "reference" else e.display


def _detailed(report: Report, section: Section, notes: dict[str, int], highlight: Collection[VersionKey]) -> Table:
    table = Table(title=escape(section.title), title_justify="left")
    rows = section.rows
    cols, cells = section_table(report, section, source=False)
    for col in cols:
        table.add_column(col, justify="left" if col == "entry" else "right", no_wrap=True)
    for e, row in zip(rows, cells):
        row[cols.index("entry")] = _label(e, notes)
        table.add_row(*(escape(c) for c in row), style="bold" if e.version_key in highlight else None)
    return table


def _compact(report: Report, section: Section, notes: dict[str, int], highlight: Collection[VersionKey]) -> Table:
    title, rows = section.title, section.rows
    unders = [[_under(e, arch) for arch in report.archs] + [_mark(e.vs_ref)] for e in rows]
    finals = [[fmt_final(e.archs[arch]) for arch in report.archs] + [""] for e in rows]
    has_diff = any(u for row in unders for u in row)
    has_final = any(f for row in finals for f in row)
    has_cost = any(e.cost is not None for e in rows)
    has_tuned = any(e.tuned_label for e in rows)
    ranges = show_ranges(report)
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("entry", justify="left", overflow="fold", ratio=1, min_width=12)
    for name in report.archs:
        table.add_column(name + "\nfinal" * has_final + "\nΔ" * has_diff, justify="right", no_wrap=True)
    table.add_column("score" + "\n" * has_final + "\nΔ" * has_diff, justify="right", no_wrap=True)
    if has_tuned:
        table.add_column("tuned", justify="left", no_wrap=True)
    if has_cost:
        table.add_column("cost", justify="right", no_wrap=True)
    for e, under, final in zip(rows, unders, finals):
        tops = [_acc(e.archs[arch]) for arch in report.archs] + [_score(e)]
        cells = [escape(fmt_rank(e, stacked=True, ranges=ranges)), escape(_label(e, notes))]
        for top, f, u in zip(tops, final, under):
            lines = [escape(top)] + ([f"[dim]{escape(f)}[/]"] if has_final else [])
            if u:
                lines.append(f"[dim]{escape(u)}[/]" if not u.endswith("*") else escape(u))
            cells.append("\n".join(lines))
        if has_tuned:
            cells.append(_TUNED.get(e.tuned_label, ""))
        if has_cost:
            cells.append(fmt_cost_short(e))
        table.add_row(*cells, style="bold" if e.version_key in highlight else None)
    return table


def _score(e: Standing) -> str:
    if e.single_seed_score is not None:
        return f"{e.single_seed_score:.2f} (1 seed)"
    return f"{e.score:.2f}" if e.score is not None else "" if e.kind in ("reference", "control") else "-"


_TUNED = {"better": "better", "worse": "worse", "equivalent": "equiv.", "inconclusive": "incon."}


def _under(e: Standing, arch: str) -> str:
    """What the compact table shows under an accuracy: the descriptive difference, or the control line's weight."""
    s = e.archs[arch]
    if arch in e.picked and s.mean is None:
        return "none ok"
    if arch in e.picked:
        return e.picked[arch]
    return f"{s.diff:+.2f}" if s.diff is not None else ""


def _acc(s: ArchStats) -> str:
    """``61.00±1.00``, then ``f``, ``m``, ``r`` when a seed failed, is missing or was retried."""
    marks = "f" * bool(s.failed_seeds) + "m" * bool(s.missing) + "r" * bool(s.retried)
    if s.mean is None:
        return "failed" if s.failed_seeds else "missing" if s.missing else "-"
    return f"{s.mean:.2f}" + (f"±{s.std:.2f}" if s.std is not None else "") + (f" {marks}" if marks else "")


def _mark(c: Comparison | None) -> str:
    """``+1.37*`` significant after the adjustment, ``+1.37`` not, ``+1.37?`` a ranked entry not testable."""
    if c is None or c.diff is None:
        return ""
    return f"{c.diff:+.2f}" + ("*" if c.significant else "?" if c.p_value is None and c.family else "")
