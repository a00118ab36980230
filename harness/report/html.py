"""The leaderboard as one self-contained HTML file: the tables, the legend, the failed runs with
their reasons, and the figures of :mod:`~harness.report.figures` (embedded as PNG images; a figure
that could not be drawn is a one-line note in its place)."""

from __future__ import annotations

import html
from pathlib import Path

from harness.report.figures import learning_curves, tradeoffs
from harness.report.legend import legend
from harness.report.model import Report, Section
from harness.report.text import section_table
from harness.results.rundir import RunDir
from harness.util.text import printable


def failures(report: Report, runs_dir: Path, limit: int = 600) -> list[tuple[str, str, int, str]]:
    """``(entry, arch, seed, reason)`` for every seed whose latest attempt failed: the reason is the
    run's failure.txt (its first ``limit`` characters), or where it was looked for."""
    out = []
    for e in report.entries:
        for arch, s in e.archs.items():
            for seed, run_id in sorted(s.failed_runs.items()):
                run = RunDir.from_id(runs_dir, run_id)
                failure = run.read_failure()
                text = None if failure is None else printable(failure)
                reason = (
                    (text.strip()[:limit] + ("..." if len(text.strip()) > limit else ""))
                    if text
                    else (f"no failure.txt at {run.failure}")
                )
                out.append((e.label, arch, seed, reason))
    return out


def render_html(report: Report, runs_dir: Path) -> str:
    def table(section: Section) -> str:
        cols, rows = section_table(report, section)
        kind, title = section.kind, section.title
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in rows)
        table = f'<table class="{kind}"><tr>{head}</tr>{body}</table>'
        return f'<h2>{html.escape(title)}</h2>\n<div class="wide">{table}</div>'

    def figure_html(figs: list[tuple[str, str]]) -> str:
        return "\n".join(
            f'<figure><img alt="{html.escape(cap)}" src="data:image/png;base64,{png}">'
            f"<figcaption>{html.escape(cap)}</figcaption></figure>"
            if png
            else f'<p class="figure-note">{html.escape(cap)}</p>'  # the figure failed: one line, the rest goes on
            for cap, png in figs
        )

    tables = "\n".join(table(section) for section in report.sections())
    failed = failures(report, runs_dir)
    failed_html = (
        (
            '<h2>Failed runs</h2>\n<table class="failures"><tr><th>entry</th><th>arch</th><th>seed</th>'
            "<th>why (failure.txt)</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(e)}</td><td>{html.escape(a)}</td><td>{seed}</td><td><pre>{html.escape(why)}</pre></td>"
                "</tr>"
                for e, a, seed, why in failed
            )
            + "</table>"
        )
        if failed
        else ""
    )
    tradeoff = figure_html(tradeoffs(report))
    curves = figure_html(learning_curves(report, runs_dir))
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in legend(report))
    title = f"harness leaderboard: {report.profile}, {report.phase} phase"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}
th {{ background: #f2f2f2; }} td:nth-child(2), th:nth-child(2) {{ text-align: left; }}
td:nth-child(2) {{ font-weight: 600; min-width: 11em; max-width: 22em; overflow-wrap: anywhere; }}
div.wide {{ overflow-x: auto; }} td:first-child {{ white-space: nowrap; }}
table.baseline td {{ background: #f7f9fc; }} table.reference td {{ background: #fbf7ef; font-style: italic; }}
table.failures td, table.failures th {{ text-align: left; vertical-align: top; font-weight: normal; }}
table.failures pre {{ margin: 0; white-space: pre-wrap; font-size: 0.85em; max-width: 70em; }}
p.figure-note {{ color: #a33; }}
figure {{ margin: 1em 0 2em 0; }} img {{ max-width: 100%; }} figcaption {{ color: #555; font-size: 0.85em; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
{tables or "<p>No measured rows.</p>"}
<ul class="notes">{notes}</ul>
{failed_html}
<h2>Trade-off: fine against coarse accuracy</h2>
{tradeoff or "<p>No measured run has finished.</p>"}
<h2>Learning curves and loss weights</h2>
{curves or f"<p>No per-epoch metrics of a submission under {html.escape(str(runs_dir))}.</p>"}
</body></html>
"""
