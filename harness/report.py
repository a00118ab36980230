"""``harness leaderboard``: the aggregated leaderboard as a terminal table, Markdown, CSV or
one self-contained HTML file (learning curves and loss weights embedded as PNG images).

Sections, always in this order and never mixed: submissions, baselines (both measured here
and ranked together), and published numbers reported elsewhere (full profile only, unranked,
outside every aggregate and test).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import aggregate
from harness.aggregate import ALPHA, REFERENCE_BASELINE, TEST_NAME, ArchStats, Standing
from harness.errors import UsageError
from harness.protocol import PROFILES, Phase

SECTIONS = (("submission", "submissions"), ("baseline", "baselines"),
            ("reference", "reported elsewhere (published numbers, not measured here)"))


@dataclass(frozen=True)
class Report:
    profile: str
    phase: Phase
    archs: list[str]
    entries: list[Standing]  # measured, ranked
    references: list[Standing]
    seeds: tuple[int, ...] = ()  # the protocol's seeds: a complete entry has each, ok, on every architecture

    def section(self, kind: str) -> list[Standing]:
        return self.references if kind == "reference" else [e for e in self.entries if e.kind == kind]


def build(df: pd.DataFrame, phase: Phase, profile: str | None = None) -> Report:
    """Aggregate the leaderboard rows of one profile and phase. With several profiles in the
    file, ``profile`` must name one."""
    profiles = sorted(set(df["profile"])) if len(df) else []
    if profile is None:
        if len(profiles) > 1:
            raise UsageError(f"the leaderboard holds several profiles ({', '.join(profiles)}); choose one with "
                             "--profile")
        profile = profiles[0] if profiles else "full"
    df = df[df["profile"] == profile]
    profile_archs = PROFILES[profile].archs if profile in PROFILES else ()
    seeds = PROFILES[profile].seeds if profile in PROFILES else ()
    archs = aggregate.phase_archs(df, phase, profile_archs)
    refs = aggregate.reference_standings(aggregate.load_reference(), archs) if profile == "full" else []
    return Report(profile=profile, phase=phase, archs=archs, entries=aggregate.standings(df, phase, archs, seeds),
                  references=refs, seeds=seeds)


# ---- cells ------------------------------------------------------------------------------------------

def _seed_list(seeds: tuple[int, ...]) -> str:
    return "/".join(str(x) for x in seeds)


def fmt_stats(s: ArchStats) -> str:
    problems = ([f"failed {_seed_list(s.failed_seeds)}"] if s.failed_seeds else []) + (
        [f"missing {_seed_list(s.missing)}"] if s.missing else []) + (
        [f"retried {_seed_list(s.retried)}"] if s.retried else [])
    if s.mean is None:
        return "; ".join(problems) or "-"
    spread = f" ± {s.std:.2f}" if s.std is not None else ""
    return f"{s.mean:.2f}{spread} (n={s.n}{''.join('; ' + p for p in problems)})"


def fmt_diff(s: ArchStats) -> str:
    if s.diff is None:
        return ""
    if s.p_value is not None:
        p = f"p={s.p_value:.3f}"
    elif s.n_pairs >= 2:
        p = "no test: identical per-seed differences"
    else:
        p = f"no test: {s.n_pairs} paired seed{'s' * (s.n_pairs != 1)}"
    return f"{s.diff:+.2f} ({p}){' *' if s.significant else ''}"


def fmt_score(e: Standing) -> str:
    return f"{e.score:.2f}" if e.score is not None else "incomplete"


def legend(report: Report) -> list[str]:
    seeds = f" ({_seed_list(report.seeds)})" if report.seeds else ""
    return [
        f"profile {report.profile}, phase {report.phase}; best fine-class test accuracy (%) per architecture: "
        "mean ± sample std (ddof = 1) over seeds, n = seeds counted; each seed counts by its latest attempt "
        "(failed: its latest attempt failed; retried: the seed has more than one attempt, each a row); runs of "
        "seeds outside the profile's are not counted.",
        "score = geometric mean over the architectures of the per-architecture means; rank over measured rows "
        f"(submissions and baselines together); 'incomplete' = not every protocol seed{seeds} has an ok latest "
        "attempt on every architecture: shown, not scored or ranked.",
        f"Δ vs {REFERENCE_BASELINE.removesuffix('.py')}: mean over paired seeds (seeds both have) of the per-seed "
        f"difference; {TEST_NAME} (df = n - 1); "
        f"* = p < {ALPHA}. With n = 3 seeds (2 df) only large, consistent differences can reach it; no marker "
        "does not mean no difference.",
    ]


def _columns(report: Report) -> list[str]:
    cols = ["rank", "entry"]
    for arch in report.archs:
        cols += [arch, f"Δ {arch}"]
    return cols + ["score"]


def _cells(report: Report, e: Standing) -> list[str]:
    cells = ["" if e.rank is None else str(e.rank), e.label]
    for arch in report.archs:
        s = e.archs[arch]
        cells += [fmt_stats(s), fmt_diff(s)]
    return cells + [fmt_score(e)]


# ---- table / markdown / csv -----------------------------------------------------------------------------

def render_table(report: Report, console: Console, *, highlight: Collection[str] = ()) -> None:
    for kind, title in SECTIONS:
        rows = report.section(kind)
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        for col in _columns(report) + (["source"] if kind == "reference" else []):
            table.add_column(col, justify="left" if col in ("entry", "source") else "right",
                             no_wrap=col == "entry")
        for e in rows:
            cells = _cells(report, e) + ([e.source] if kind == "reference" else [])
            style = "bold" if e.sha256 in highlight else None
            table.add_row(*(escape(c) for c in cells), style=style)  # "[bf16]" is not markup
        console.print(table)
    if not report.entries:
        console.print(f"no measured rows for profile {report.profile}, phase {report.phase}")
    for line in legend(report):
        console.print(f"[dim]{line}[/]")


def render_markdown(report: Report) -> str:
    out = [f"# Leaderboard ({report.profile}, {report.phase} phase)", ""]
    for kind, title in SECTIONS:
        rows = report.section(kind)
        if not rows:
            continue
        cols = _columns(report) + (["source"] if kind == "reference" else [])
        out += [f"## {title[0].upper()}{title[1:]}", "", "| " + " | ".join(cols) + " |",
                "|" + "|".join("---" if c in ("entry", "source") else "---:" for c in cols) + "|"]
        for e in rows:
            cells = _cells(report, e) + ([e.source] if kind == "reference" else [])
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
    return "\n".join(out + [f"- {line}" for line in legend(report)]) + "\n"


def render_csv(report: Report) -> str:
    """One line per entry; numbers unformatted (empty where absent)."""
    records = []
    for kind, _ in SECTIONS:
        for e in report.section(kind):
            rec = {"section": kind, "rank": e.rank, "entry": e.label, "submission_sha256": e.sha256}
            for arch in report.archs:
                s = e.archs[arch]
                rec.update({f"{arch}_mean": s.mean, f"{arch}_std": s.std, f"{arch}_n": s.n,
                            f"{arch}_failed": s.failed, f"{arch}_failed_seeds": _seed_list(s.failed_seeds),
                            f"{arch}_missing_seeds": _seed_list(s.missing),
                            f"{arch}_retried_seeds": _seed_list(s.retried), f"{arch}_diff": s.diff,
                            f"{arch}_paired": s.n_pairs, f"{arch}_p": s.p_value})
            rec.update({"score": e.score, "source": e.source})
            records.append(rec)
    cols = ["section", "rank", "entry", "submission_sha256"] + [
        f"{a}_{k}" for a in report.archs for k in ("mean", "std", "n", "failed", "diff", "p")] + ["score", "source"]
    return pd.DataFrame(records, columns=cols).to_csv(index=False, lineterminator="\n")


# ---- html ---------------------------------------------------------------------------------------------

def _metrics(runs_dir: Path, run_id: str) -> pd.DataFrame | None:
    path = runs_dir / run_id / "metrics.jsonl"
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
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
        cols = _columns(report) + (["source"] if kind == "reference" else [])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(report, e)
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
td:nth-child(2) {{ font-weight: 600; }}
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


def render(report: Report, fmt: str, runs_dir: Path) -> str:
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "html":
        return render_html(report, runs_dir)
    raise UsageError(f"unknown format {fmt!r}")
