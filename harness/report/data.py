"""The leaderboard as data: one nested record per entry (:func:`entry_record`), as JSON
(``--format json``: the architectures nested) and as CSV (``--format csv``: the same fields, one
column each, ``ARCH_field``). Accuracies, differences, intervals and the cost ratio are rounded to
two decimals, p-values to four; absent values are null (JSON) or empty (CSV)."""

from __future__ import annotations

import json

import pandas as pd

from harness.aggregate import ArchStats, Standing
from harness.report.model import HEADLINE, Report
from harness.text import csv_cell, one_line

PER_ARCH = (
    "mean",
    "std",
    "n",
    "final_mean",
    "coarse_mean",
    "picked",
    "failed",
    "failed_seeds",
    "missing_seeds",
    "retried_seeds",
)
COMPARED = ("diff", "diff_low", "diff_high", "paired", "p", "p_holm")
HEAD = (
    "section",
    "group",
    "headline",
    "rank",
    "rank_best",
    "rank_worst",
    "entry",
    "submission_sha256",
    "superseded",
    "identical_to",
)
TAIL = ("score", "score_low", "score_high", "significantly_above", "cost", "cost_on", "source")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _compared(s: ArchStats) -> dict[str, object]:
    return {
        "diff": _round(s.diff, 2),
        "diff_low": _round(s.ci and s.ci[0], 2),
        "diff_high": _round(s.ci and s.ci[1], 2),
        "paired": s.n_pairs,
        "p": _round(s.p_value, 4),
        "p_holm": _round(s.p_adjusted, 4),
    }


def _arch(e: Standing, arch: str, s: ArchStats) -> dict[str, object]:
    return {
        "mean": _round(s.mean, 2),
        "std": _round(s.std, 2),
        "n": s.n,
        "final_mean": _round(s.final_mean, 2),
        "coarse_mean": _round(s.coarse_mean, 2),
        "picked": e.picked.get(arch),
        "failed": s.failed,
        "failed_seeds": list(s.failed_seeds),
        "missing_seeds": list(s.missing),
        "retried_seeds": list(s.retried),
        **_compared(s),
    }


def entry_record(report: Report, e: Standing, section: str) -> dict[str, object]:
    """One entry: its place (``group``: its comparison group, the settings it is ranked and tested
    within; ``headline``: the task's settings), identity, per-architecture statistics (``archs``),
    the pooled comparison with equal weighting (``pooled``, null without one), score, the entries of
    its group it is significantly above, and cost. Text is on one line."""
    return {
        "section": "control" if e.kind == "control" else section,
        "group": e.settings if e.kind != "reference" else None,
        "headline": e.kind != "reference" and e.settings == HEADLINE,
        "rank": e.rank,
        "rank_best": e.rank_range and e.rank_range[0],
        "rank_worst": e.rank_range and e.rank_range[1],
        "entry": e.label,
        "submission_sha256": e.sha256,
        "superseded": e.version.startswith("superseded"),
        "identical_to": [one_line(x) for x in e.identical_to],
        "archs": {arch: _arch(e, arch, e.archs[arch]) for arch in report.archs},
        "pooled": None if e.pooled is None else _compared(e.pooled),
        "score": _round(e.score, 2),
        "score_low": _round(e.score_ci and e.score_ci[0], 2),
        "score_high": _round(e.score_ci and e.score_ci[1], 2),
        "significantly_above": list(e.above),
        "cost": _round(e.cost, 2),
        "cost_on": e.cost_on or None,
        "source": one_line(e.source),
    }


def records(report: Report) -> list[dict[str, object]]:
    return [entry_record(report, e, e.kind) for section in report.sections() for e in section.rows]


def render_json(report: Report) -> str:
    data = {
        "profile": report.profile,
        "phase": report.phase,
        "archs": report.archs,
        "ranked_on": report.only_arch or "all",
        "seeds": list(report.seeds),
        "entries": records(report),
        "retired": [
            {
                "entry": one_line(r.submission),
                "submission_sha256": r.sha256,
                "kind": r.kind or None,
                "since": r.at,
                "reason": one_line(r.reason),
            }
            for r in report.retired
        ],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _seed_list(seeds: object) -> str:
    return "/".join(map(str, seeds)) if isinstance(seeds, list) else ""


def render_csv(report: Report) -> str:
    """One line per entry, one number per column (the JSON's fields, the architectures' as
    ``ARCH_field``); ranks as integers; text cells safe for a spreadsheet (:func:`csv_cell`)."""
    flat = []
    for rec in records(report):
        row = {k: rec[k] for k in HEAD + TAIL}
        row["entry"] = csv_cell(str(rec["entry"]))
        row["source"] = csv_cell(str(rec["source"]))
        row["cost_on"] = csv_cell(str(rec["cost_on"] or ""))
        row["identical_to"] = csv_cell("; ".join(rec["identical_to"]))  # type: ignore[arg-type]
        row["significantly_above"] = csv_cell("; ".join(rec["significantly_above"]))  # type: ignore[arg-type]
        for arch, values in rec["archs"].items():  # type: ignore[attr-defined]
            for k, v in values.items():
                row[f"{arch}_{k}"] = _seed_list(v) if k.endswith("_seeds") else v
        for k, v in (rec["pooled"] or {}).items():  # type: ignore[attr-defined]
            row[f"pooled_{k}"] = v
        flat.append(row)
    cols = (
        list(HEAD)
        + [f"{a}_{k}" for a in report.archs for k in PER_ARCH + COMPARED]
        + [f"pooled_{k}" for k in COMPARED]
        + list(TAIL)
    )
    df = pd.DataFrame(flat, columns=cols)
    for col in ["rank", "rank_best", "rank_worst"] + [c for c in cols if c.endswith(("_n", "_failed", "_paired"))]:
        df[col] = df[col].astype("Int64")
    return df.to_csv(index=False, lineterminator="\n")
