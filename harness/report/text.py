"""The leaderboard as text: the terminal table, Markdown and CSV, and the cells and legend every
format shares."""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.aggregate import ALPHA, REFERENCE_BASELINE, TEST_NAME, ArchStats, Standing
from harness.report.model import SECTIONS, Report


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


def table_columns(report: Report) -> list[str]:
    cols = ["rank", "entry"]
    for arch in report.archs:
        cols += [arch, f"Δ {arch}"]
    return cols + ["score"]


def table_cells(report: Report, e: Standing) -> list[str]:
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
        for col in table_columns(report) + (["source"] if kind == "reference" else []):
            table.add_column(col, justify="left" if col in ("entry", "source") else "right",
                             no_wrap=col == "entry")
        for e in rows:
            cells = table_cells(report, e) + ([e.source] if kind == "reference" else [])
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
        cols = table_columns(report) + (["source"] if kind == "reference" else [])
        out += [f"## {title[0].upper()}{title[1:]}", "", "| " + " | ".join(cols) + " |",
                "|" + "|".join("---" if c in ("entry", "source") else "---:" for c in cols) + "|"]
        for e in rows:
            cells = table_cells(report, e) + ([e.source] if kind == "reference" else [])
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
