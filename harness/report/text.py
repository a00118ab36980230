"""The leaderboard as text: the terminal table, Markdown and CSV, and the cells and legend every
format shares."""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.aggregate import ALPHA, CORRECTION, LEVEL, REFERENCE_BASELINE, TEST_NAME, ArchStats, Standing
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
    """``+1.37 [+0.57, +2.17] p=0.018, Holm 0.126 *``: the paired difference from equal weighting, its
    95% interval, the raw and the adjusted p-value; ``*`` only when the adjusted one is below ALPHA."""
    if s.diff is None:
        return ""
    interval = f" [{s.ci[0]:+.2f}, {s.ci[1]:+.2f}]" if s.ci is not None else ""
    if s.p_value is not None:
        p = f"p{_p(s.p_value)}" + (f", {CORRECTION} {_p(s.p_adjusted).lstrip('=')}" if s.p_adjusted is not None else "")
    elif s.n_pairs >= 2:
        p = "no test: identical per-seed differences"
    else:
        p = f"no test: {s.n_pairs} paired seed{'s' * (s.n_pairs != 1)}"
    return f"{s.diff:+.2f}{interval} ({p}){' *' if s.significant else ''}"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"={p:.3f}"


def fmt_rank(e: Standing) -> str:
    """``2``, or ``2 (1-4)`` when the score intervals allow other ranks."""
    if e.rank is None:
        return ""
    if e.rank_range is None or e.rank_range[0] == e.rank_range[1]:
        return str(e.rank)
    return f"{e.rank} ({e.rank_range[0]}-{e.rank_range[1]})"


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
        f"difference, [its {LEVEL:.0%} t-interval]; {TEST_NAME} (df = n - 1); Δ pooled: the same over paired "
        "(architecture, seed). p-values are adjusted for the multiple comparisons of this view with "
        f"{CORRECTION}'s method (family-wise error over every Δ of the profile and phase, all entries); "
        f"* = adjusted p < {ALPHA}. With n = 3 "
        "seeds (2 df) only large, consistent differences can reach it; no marker does not mean no difference.",
        f"rank (a-b): the ranks allowed by the score interval (the geometric mean of the ends of the "
        f"per-architecture means' {LEVEL:.0%} t-intervals: a summary of their spread, not itself a {LEVEL:.0%} "
        "interval of the score) among the others': entries whose intervals overlap are not told apart by rank "
        "alone.",
    ]


def table_columns(report: Report) -> list[str]:
    cols = ["rank", "entry"]
    for arch in report.archs:
        cols += [arch, f"Δ {arch}"]
    return cols + ["Δ pooled", "score"]


def table_cells(report: Report, e: Standing) -> list[str]:
    cells = [fmt_rank(e), e.label]
    for arch in report.archs:
        s = e.archs[arch]
        cells += [fmt_stats(s), fmt_diff(s)]
    return cells + [fmt_diff(e.pooled) if e.pooled is not None else "", fmt_score(e)]


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


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def render_csv(report: Report) -> str:
    """One line per entry, one number per column: accuracies, differences and intervals rounded to
    two decimals, p-values to four; ranks as integers; empty where absent."""
    records = []
    for kind, _ in SECTIONS:
        for e in report.section(kind):
            rec = {"section": kind, "rank": e.rank, "rank_best": e.rank_range and e.rank_range[0],
                   "rank_worst": e.rank_range and e.rank_range[1], "entry": e.label, "submission_sha256": e.sha256}
            comparisons = [(arch, e.archs[arch]) for arch in report.archs] + [("pooled", e.pooled)]
            for arch, s in comparisons:
                if arch != "pooled":
                    rec.update({f"{arch}_mean": _round(s.mean, 2), f"{arch}_std": _round(s.std, 2), f"{arch}_n": s.n,
                                f"{arch}_failed": s.failed, f"{arch}_failed_seeds": _seed_list(s.failed_seeds),
                                f"{arch}_missing_seeds": _seed_list(s.missing),
                                f"{arch}_retried_seeds": _seed_list(s.retried)})
                if s is None:
                    continue
                rec.update({f"{arch}_diff": _round(s.diff, 2), f"{arch}_diff_low": _round(s.ci and s.ci[0], 2),
                            f"{arch}_diff_high": _round(s.ci and s.ci[1], 2), f"{arch}_paired": s.n_pairs,
                            f"{arch}_p": _round(s.p_value, 4), f"{arch}_p_holm": _round(s.p_adjusted, 4)})
            rec.update({"score": _round(e.score, 2), "score_low": _round(e.score_ci and e.score_ci[0], 2),
                        "score_high": _round(e.score_ci and e.score_ci[1], 2), "source": e.source})
            records.append(rec)
    per_arch = ("mean", "std", "n", "failed", "failed_seeds", "missing_seeds", "retried_seeds")
    compared = ("diff", "diff_low", "diff_high", "paired", "p", "p_holm")
    cols = (["section", "rank", "rank_best", "rank_worst", "entry", "submission_sha256"]
            + [f"{a}_{k}" for a in report.archs for k in per_arch + compared]
            + [f"pooled_{k}" for k in compared] + ["score", "score_low", "score_high", "source"])
    df = pd.DataFrame(records, columns=cols)
    for col in ["rank", "rank_best", "rank_worst"] + [c for c in cols if c.endswith(("_n", "_failed", "_paired"))]:
        df[col] = df[col].astype("Int64")
    return df.to_csv(index=False, lineterminator="\n")
