"""``harness leaderboard``: the aggregated leaderboard (:mod:`~harness.report.model`) as a terminal
table (:mod:`~harness.report.terminal`), Markdown (:mod:`~harness.report.text`), CSV, JSON and every
test as CSV (:mod:`~harness.report.data`) or HTML (:mod:`~harness.report.html`); what an evaluation
prints as it goes is :mod:`~harness.report.console`."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UsageError
from harness.report.data import render_csv, render_json, render_tests_csv
from harness.report.html import render_html
from harness.report.legend import legend
from harness.report.model import SECTIONS, Report, build
from harness.report.terminal import render_table
from harness.report.text import fmt_comparison, fmt_diff, fmt_score, fmt_stats, render_markdown

__all__ = [
    "SECTIONS",
    "Report",
    "build",
    "fmt_comparison",
    "fmt_diff",
    "fmt_score",
    "fmt_stats",
    "legend",
    "render",
    "render_csv",
    "render_json",
    "render_html",
    "render_markdown",
    "render_tests_csv",
    "render_table",
]


def render(report: Report, fmt: str, runs_dir: Path) -> str:
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "json":
        return render_json(report)
    if fmt == "tests":
        return render_tests_csv(report)
    if fmt == "html":
        return render_html(report, runs_dir)
    raise UsageError(f"unknown format {fmt!r}")
