"""The table of an evaluation's runs that ``harness evaluate`` and ``harness baselines`` end with.

When the detailed table (one bordered line per run) fits the terminal it is printed as is;
otherwise a compact one that reads whole at 80 columns: stacked headers, no borders, and with
several files each file's name on a line of its own above its runs, so that neither a name nor a
number is cut.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from harness.results.record import Recorded

# (detailed header, compact header, justification)
_COLUMNS = (
    ("status", "status", "left"),
    ("best fine acc", "best\nfine", "right"),
    ("best epoch", "best\nepoch", "right"),
    ("final fine acc", "final\nfine", "right"),
    ("best coarse acc", "best\ncoarse", "right"),
    ("time", "time", "right"),
)


def _cells(rec: Recorded) -> list[str]:
    r = rec.result
    fmt = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    return [
        "[green]ok[/]" if r.status == "ok" else "[red]failed[/]",
        fmt(r.best_fine_acc),
        "" if r.best_epoch is None else str(r.best_epoch + 1),
        fmt(r.final_fine_acc),
        fmt(r.best_coarse_acc),
        f"{r.wall_seconds:.0f} s",
    ]


def _grouped(records: Sequence[Recorded]) -> list[Recorded]:
    """The runs of each file together (files in the order their first run ended)."""
    order = {name: i for i, name in reversed(list(enumerate(r.spec.submission for r in records)))}
    return sorted(records, key=lambda r: order[r.spec.submission])


def _detailed(records: Sequence[Recorded], several: bool) -> Table:
    table = Table(title="results", title_justify="left")
    for col in ("submission",) * several + ("arch", "seed"):
        table.add_column(col, justify="right" if col == "seed" else "left", no_wrap=True)
    for header, _, justify in _COLUMNS:
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for rec in records:
        name = (escape(rec.spec.submission),) if several else ()
        table.add_row(*name, rec.spec.arch, str(rec.spec.seed), *_cells(rec))
    return table


def _compact(records: Sequence[Recorded], several: bool) -> Table:
    table = Table(
        title="results (accuracies in %)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        expand=True,
    )
    table.add_column("file\nrun" if several else "run", overflow="fold", min_width=8, ratio=1)
    for _, header, justify in _COLUMNS:
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    shown = None
    for rec in records:
        if several and rec.spec.submission != shown:
            shown = rec.spec.submission
            table.add_row(f"[bold]{escape(shown)}[/]")
        table.add_row(f"{rec.spec.arch} seed {rec.spec.seed}", *_cells(rec))
    return table


def results_table(console: Console, records: Sequence[Recorded], *, several: bool) -> Table:
    """The detailed table when it fits ``console``'s width, else the compact one."""
    records = _grouped(records)
    detailed = _detailed(records, several)
    wide = console.options.update_width(10_000)  # measure unclamped: the width the table wants
    if Measurement.get(console, wide, detailed).maximum <= console.width:
        return detailed
    return _compact(records, several)
