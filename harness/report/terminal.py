"""The leaderboard in the terminal. When the detailed table (every interval and p-value, the
same cells as Markdown) fits the terminal's width it is printed as is; otherwise a compact one
is, two lines per entry, that reads well at 80 columns: the accuracy line, and under it the
difference from equal weighting with a one-character marker. A short legend says what the marks
mean and where the detail is. Published rows name their source in a numbered note."""

from __future__ import annotations

from collections.abc import Collection

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from harness.aggregate import ALPHA, CORRECTION, REFERENCE_BASELINE, ArchStats, Standing
from harness.report.model import Report, Section
from harness.report.text import (
    fmt_cost_short,
    fmt_final,
    fmt_rank,
    legend,
    published_notes,
    retired_note,
    section_table,
    unranked_note,
)
from harness.static_sweep import CONTROL_LABEL

_REF = REFERENCE_BASELINE.removesuffix(".py")


def render_table(report: Report, console: Console, *, highlight: Collection[tuple[str, str, str]] = ()) -> None:
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
        console.print(f"\\[{i}] {escape(source)}")
    if not report.entries:
        console.print(
            f"no measured rows for profile {escape(report.profile)}, phase {report.phase} yet: `harness "
            "evaluate FILE` and `harness baselines` add them"
        )
    for line in legend(report) if fits else short_legend(report):
        console.print(f"[dim]{escape(line)}[/]")


def _label(e: Standing, notes: dict[str, int]) -> str:
    return f"{e.label} [{notes[e.source]}]" if e.kind == "reference" else e.display


def _detailed(
    report: Report, section: Section, notes: dict[str, int], highlight: Collection[tuple[str, str, str]]
) -> Table:
    table = Table(title=escape(section.title), title_justify="left")
    rows = section.rows
    cols, cells = section_table(report, section, source=False)
    for col in cols:
        table.add_column(col, justify="left" if col == "entry" else "right", no_wrap=True)
    for e, row in zip(rows, cells):
        row[cols.index("entry")] = _label(e, notes)
        table.add_row(*(escape(c) for c in row), style="bold" if e.version_key in highlight else None)
    return table


def _compact(
    report: Report, section: Section, notes: dict[str, int], highlight: Collection[tuple[str, str, str]]
) -> Table:
    title, rows = section.title, section.rows
    unders = [[_under(e, arch) for arch in report.archs] + [_diff(e.pooled) if e.pooled else ""] for e in rows]
    finals = [[fmt_final(e.archs[arch]) for arch in report.archs] + [""] for e in rows]
    has_diff = any(u for row in unders for u in row)
    has_final = any(f for row in finals for f in row)
    has_cost = any(e.cost is not None for e in rows)
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("entry", justify="left", overflow="fold", ratio=1, min_width=12)
    for name in report.archs:
        table.add_column(name + "\nfinal" * has_final + "\nΔ" * has_diff, justify="right", no_wrap=True)
    table.add_column("score" + "\n" * has_final + "\nΔ all" * has_diff, justify="right", no_wrap=True)
    if has_cost:
        table.add_column("cost", justify="right", no_wrap=True)
    for e, under, final in zip(rows, unders, finals):
        tops = [_acc(e.archs[arch]) for arch in report.archs] + [f"{e.score:.2f}" if e.score is not None else "-"]
        cells = [escape(fmt_rank(e, stacked=True)), escape(_label(e, notes))]
        for top, f, u in zip(tops, final, under):
            lines = [escape(top)] + ([f"[dim]{escape(f)}[/]"] if has_final else [])
            if u:
                lines.append(f"[dim]{escape(u)}[/]" if not u.endswith("*") else escape(u))
            cells.append("\n".join(lines))
        if has_cost:
            cells.append(fmt_cost_short(e))
        table.add_row(*cells, style="bold" if e.version_key in highlight else None)
    return table


def _under(e: Standing, arch: str) -> str:
    """What the compact table shows under an accuracy: the difference, or the control line's weight."""
    s = e.archs[arch]
    if arch in e.picked and s.mean is None:
        return "none ok"
    if arch in e.picked:
        return e.picked[arch] + (f" {s.diff:+.2f}" if s.diff is not None else "")
    return _diff(s)


def _acc(s: ArchStats) -> str:
    """``61.00±1.00``, then ``f``, ``m``, ``r`` when a seed failed, is missing or was retried."""
    marks = "f" * bool(s.failed_seeds) + "m" * bool(s.missing) + "r" * bool(s.retried)
    if s.mean is None:
        return "failed" if s.failed_seeds else "missing" if s.missing else "-"
    return f"{s.mean:.2f}" + (f"±{s.std:.2f}" if s.std is not None else "") + (f" {marks}" if marks else "")


def _diff(s: ArchStats) -> str:
    """``+1.37*`` significant after the adjustment, ``+1.37`` not, ``+1.37?`` not testable."""
    if s.diff is None:
        return ""
    return f"{s.diff:+.2f}" + ("*" if s.significant else "?" if s.p_value is None else "")


def short_legend(report: Report) -> list[str]:
    """What the compact table's marks mean, in a few lines."""
    cost = any(e.cost is not None for e in report.entries)
    return (
        [
            f"profile {report.profile}, phase {report.phase}. Each cell: best fine-class test accuracy (%), "
            f"mean±std over seeds; under it Δ, the mean paired difference from {_REF}. "
            f"* = significant after {CORRECTION}'s adjustment (p < {ALPHA}; with 3 seeds only large, consistent "
            "gaps are); ? = not testable (under 2 paired seeds, or identical differences). f/m/r = a seed "
            "failed/is missing/was retried. final = the last epoch's accuracy, mean over seeds. # = rank; under it "
            "the ranks the pairwise tests allow. score = "
            "geometric mean over the architectures (- = incomplete: not ranked); Δ all = pooled over (architecture, "
            "seed). Ranks, Δ and * are within one table's settings (the first tables: the task's)."
            + (
                f" cost = training time / {_REF}'s over every epoch, on the same device type and sandbox "
                "(a loaded machine inflates it)."
                if cost
                else ""
            )
            + (f" {CONTROL_LABEL}: not ranked or tested." if report.controls else ""),
            "Intervals and p-values: a wider terminal, or --format markdown, csv, json or html.",
        ]
        + unranked_note(report)
        + published_notes(report)
        + retired_note(report)
    )
