"""The leaderboard as one self-contained HTML file: the tables, the legend, and learning curves and
loss weights from the runs' metrics (embedded as PNG images)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd

from harness import aggregate
from harness.aggregate import ArchStats
from harness.report.model import SECTIONS, Report
from harness.report.text import legend, table_cells, table_columns
from harness.rundir import RunDir


def _metrics(runs_dir: Path, run_id: str) -> pd.DataFrame | None:
    rows = RunDir.from_id(runs_dir, run_id).read_metrics()
    return pd.DataFrame(rows) if rows else None


def _curve(runs_dir: Path, stats: ArchStats, column: str) -> tuple[list[int], list[float], list[float]] | None:
    """Mean and sample std over seeds of ``column`` per epoch (epochs every counted seed reached)."""
    frames = [m for rid in stats.run_ids.values() if (m := _metrics(runs_dir, rid)) is not None and column in m]
    if not frames:
        return None
    epochs = min(len(m) for m in frames)
    values = [[float(m[column].iloc[i]) for m in frames] for i in range(epochs)]
    means = [sum(v) / len(v) for v in values]
    stds = [aggregate.statistics_std(v) or 0.0 for v in values]
    return list(range(epochs)), means, stds


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figures(report: Report, runs_dir: Path) -> list[tuple[str, str]]:
    """``(caption, base64 png)``: per submission, test fine accuracy per architecture against the
    baselines, and the loss weights it produced."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baselines = report.section("baseline")
    figures = []
    for sub in report.section("submission"):
        fig, axes = plt.subplots(1, len(report.archs), figsize=(5.2 * len(report.archs), 3.6), squeeze=False)
        drawn = False
        for ax, arch in zip(axes[0], report.archs):
            for entry, style in ([(b, dict(lw=1, alpha=0.6, marker=".", ms=4)) for b in baselines]
                                 + [(sub, dict(lw=2.4, color="k", marker="o", ms=4))]):
                curve = _curve(runs_dir, entry.archs[arch], "test_fine_acc")
                if curve is None:
                    continue
                x, mean, std = curve
                line, = ax.plot(x, mean, label=entry.label.removesuffix(".py"), **style)
                ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                color=line.get_color(), alpha=0.15, lw=0)
                drawn = True
            ax.set(title=arch, xlabel="epoch", ylabel="test fine accuracy (%)")
            ax.grid(alpha=0.3)
        if drawn:
            axes[0][-1].legend(fontsize=7, loc="lower right", ncol=2)
            figures.append((f"{sub.label}: test fine accuracy per epoch (mean over seeds, band ± 1 std) against "
                            "the baselines", _png(fig)))
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        drawn = False
        for arch in report.archs:
            for column, dash in (("weight_fine", "-"), ("weight_coarse", "--")):
                curve = _curve(runs_dir, sub.archs[arch], column)
                if curve is not None:
                    x, mean, _ = curve
                    ax.plot(x, mean, dash, marker="o", ms=3, label=f"{arch} {column.removeprefix('weight_')}")
                    drawn = True
        ax.set(title=f"{sub.label}: loss weights", xlabel="epoch", ylabel="mean dL/dL_task over the epoch")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7)
            figures.append((f"{sub.label}: the weights it gave each task's loss (dL/d fine_loss, dL/d coarse_loss; "
                            "epoch means, averaged over seeds)", _png(fig)))
        plt.close(fig)
    return figures


def render_html(report: Report, runs_dir: Path) -> str:
    def table(kind: str, title: str) -> str:
        rows = report.section(kind)
        if not rows:
            return ""
        cols = table_columns(report) + (["source"] if kind == "reference" else [])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in table_cells(report, e)
                             + ([e.source] if kind == "reference" else [])) + "</tr>" for e in rows)
        return f'<h2>{html.escape(title)}</h2>\n<table class="{kind}"><tr>{head}</tr>{body}</table>'

    tables = "\n".join(table(kind, title) for kind, title in SECTIONS)
    figures = "\n".join(f'<figure><img alt="{html.escape(cap)}" src="data:image/png;base64,{png}">'
                        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
                        for cap, png in _figures(report, runs_dir))
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in legend(report))
    title = f"harness leaderboard: {report.profile}, {report.phase} phase"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}
th {{ background: #f2f2f2; }} td:nth-child(2), th:nth-child(2) {{ text-align: left; }}
td:nth-child(2) {{ font-weight: 600; }} td:first-child {{ white-space: nowrap; }}
table.baseline td {{ background: #f7f9fc; }} table.reference td {{ background: #fbf7ef; font-style: italic; }}
figure {{ margin: 1em 0 2em 0; }} img {{ max-width: 100%; }} figcaption {{ color: #555; font-size: 0.85em; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
{tables or "<p>No measured rows.</p>"}
<ul class="notes">{notes}</ul>
<h2>Learning curves and loss weights</h2>
{figures or "<p>No per-epoch metrics found under the runs directory.</p>"}
</body></html>
"""
