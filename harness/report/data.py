"""The leaderboard as data: typed records (pydantic models, for :mod:`harness.api`), JSON (``--format
json``: the architectures nested), CSV (``--format csv``: the same fields, one column each,
``ARCH_field``) and every test of the board's families (``--format tests``: one CSV line per test;
the JSON's ``tests``).

Accuracies, differences, intervals and the cost ratio of the entry records are rounded to two
decimals; p-values are exported as computed, and the tests' records are not rounded at all, so the
adjustment can be rebuilt from them (raw p, the test's weight in its group's family: Holm's weighted
step-down). Absent values are null (JSON) or empty (CSV)."""

from __future__ import annotations

import json

import pandas as pd
from pydantic import BaseModel, ConfigDict

from harness.report.model import HEADLINE, Report, seed_list
from harness.results.aggregate import ALPHA, ArchStats, Comparison, Standing
from harness.results.family import MARGIN
from harness.util.text import csv_cell, one_line


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class ComparisonRecord(_Model):
    """A paired comparison over per-seed scores. ``family``: primary, pairwise, or null (descriptive:
    not in the family, no claim)."""

    diff: float | None
    diff_low: float | None
    diff_high: float | None
    paired: int
    seeds: list[int]
    p: float | None
    p_adjusted: float | None
    family: str | None
    significant: bool


class TunedRecord(ComparisonRecord):
    """Against the tuned static weight: the label, and the equivalence test (TOST, ±``margin`` points)."""

    label: str
    margin: float
    p_equivalent: float | None
    p_equivalent_adjusted: float | None


class ArchRecord(_Model):
    """One architecture: accuracies over the protocol's seeds, and the descriptive difference from
    equal weighting (``p``: unadjusted, no claim)."""

    mean: float | None
    std: float | None
    n: int
    final_mean: float | None
    coarse_mean: float | None
    picked: str | None
    failed: int
    failed_seeds: list[int]
    missing_seeds: list[int]
    retried_seeds: list[int]
    extra_seeds: list[int]
    diff: float | None
    diff_low: float | None
    diff_high: float | None
    paired: int
    p: float | None


class EntryRecord(_Model):
    """One line of the board. ``entry``: the label the views show; ``name`` and ``version`` (the
    sha256's first 8 characters) apart; ``current``: the version the board ranks; ``headline``: a
    measured, ranked-or-rankable line of the task's settings (not a published, reproduction or
    control line)."""

    section: str
    group: str | None
    headline: bool
    rank: int | None
    rank_best: int | None
    rank_worst: int | None
    entry: str
    name: str
    version: str | None
    kind: str
    submission_sha256: str
    current: bool
    superseded: bool
    identical_to: list[str]
    archs: dict[str, ArchRecord]
    vs_equal_weighting: ComparisonRecord | None
    vs_tuned: TunedRecord | None
    p_improvement: float | None
    score: float | None
    score_low: float | None
    score_high: float | None
    single_seed_score: float | None
    significantly_above: list[str]
    cost: float | None
    cost_on: str | None
    source: str


class TestRecord(_Model):
    """One test of a group's family, unrounded: ``a - b`` over ``seeds``; ``weight``: its share of
    alpha; ``p_adjusted``: Holm's weighted step-down over the group's tests; ``claim``: adjusted p below
    ``alpha``."""

    group: str
    family: str
    test: str  # vs equal_weighting | vs tuned static weight | equivalence to tuned static weight | pair
    a: str
    b: str
    diff: float | None
    low: float | None
    high: float | None
    paired: int
    seeds: list[int]
    p: float
    p_adjusted: float
    weight: float
    alpha: float
    claim: bool


class PowerRecord(_Model):
    """What a group's tests can detect with 80% power (:class:`harness.results.family.Power`)."""

    group: str
    seeds: int
    sd: float | None
    tests: int
    level_primary: float | None
    level_pair: float | None
    detectable_vs_equal_weighting: float | None
    detectable_pair: float | None


class RetiredRecord(_Model):
    entry: str
    submission_sha256: str
    kind: str | None
    since: str
    reason: str


class BoardRecord(_Model):
    """The whole view, as ``--format json`` prints it and :func:`harness.api.leaderboard` returns it."""

    profile: str
    phase: str
    archs: list[str]
    ranked_on: str
    seeds: list[int]
    entries: list[EntryRecord]
    tests: list[TestRecord]
    power: list[PowerRecord]
    retired: list[RetiredRecord]


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def comparison_record(c: Comparison) -> ComparisonRecord:
    return ComparisonRecord(
        diff=_round(c.diff, 2),
        diff_low=_round(c.ci and c.ci[0], 2),
        diff_high=_round(c.ci and c.ci[1], 2),
        paired=c.n_pairs,
        seeds=list(c.seeds),
        p=c.p_value,
        p_adjusted=c.p_adjusted,
        family=c.family or None,
        significant=c.significant,
    )


def _tuned(e: Standing) -> TunedRecord | None:
    if e.vs_tuned is None or not e.tuned_label:
        return None
    c = e.vs_tuned
    return TunedRecord(
        **comparison_record(c).model_dump(),
        label=e.tuned_label,
        margin=MARGIN,
        p_equivalent=c.p_equivalent,
        p_equivalent_adjusted=c.p_equivalent_adjusted,
    )


def _arch(e: Standing, arch: str, s: ArchStats) -> ArchRecord:
    return ArchRecord(
        mean=_round(s.mean, 2),
        std=_round(s.std, 2),
        n=s.n,
        final_mean=_round(s.final_mean, 2),
        coarse_mean=_round(s.coarse_mean, 2),
        picked=e.picked.get(arch),
        failed=s.failed,
        failed_seeds=list(s.failed_seeds),
        missing_seeds=list(s.missing),
        retried_seeds=list(s.retried),
        extra_seeds=sorted(s.extra),
        diff=_round(s.diff, 2),
        diff_low=_round(s.ci and s.ci[0], 2),
        diff_high=_round(s.ci and s.ci[1], 2),
        paired=s.n_pairs,
        p=s.p_value,
    )


def entry_model(report: Report, e: Standing, section: str) -> EntryRecord:
    """One line: its place (``group``: its comparison group; ``headline``: a measured line of the task's
    settings), identity, per-architecture statistics, comparisons, score, rank, cost. Text on one line."""
    measured = e.kind in ("submission", "baseline")
    return EntryRecord(
        section="control" if e.kind == "control" else section,
        group=e.settings if e.kind != "reference" else None,
        headline=measured and e.settings == HEADLINE,
        rank=e.rank,
        rank_best=e.rank_range and e.rank_range[0],
        rank_worst=e.rank_range and e.rank_range[1],
        entry=e.label,
        name=e.name if e.submission else one_line(e.label),
        version=e.sha256[:8] or None,
        kind=e.kind,
        submission_sha256=e.sha256,
        current=e.current,
        superseded=not e.current,
        identical_to=[one_line(x) for x in e.identical_to],
        archs={arch: _arch(e, arch, e.archs[arch]) for arch in report.archs},
        vs_equal_weighting=None if e.vs_ref is None else comparison_record(e.vs_ref),
        vs_tuned=_tuned(e),
        p_improvement=e.improvement,
        score=_round(e.score, 2),
        score_low=_round(e.score_ci and e.score_ci[0], 2),
        score_high=_round(e.score_ci and e.score_ci[1], 2),
        single_seed_score=_round(e.single_seed_score, 2),
        significantly_above=list(e.above),
        cost=_round(e.cost, 2),
        cost_on=e.cost_on or None,
        source=one_line(e.source),
    )


def entry_record(report: Report, e: Standing, section: str) -> dict[str, object]:
    """:func:`entry_model` as plain data (JSON-ready)."""
    return entry_model(report, e, section).model_dump()


def test_records(report: Report) -> list[TestRecord]:
    """Every test of every group's family, unrounded (the primary ones per entry, then the pairs)."""
    out: list[TestRecord] = []

    def add(group: str, c: Comparison, test: str, a: str, b: str, p, adjusted, weight: float) -> None:
        if p is None or adjusted is None or weight <= 0:
            return
        out.append(
            TestRecord(
                group=group,
                family=c.family,
                test=test,
                a=a,
                b=b,
                diff=c.diff,
                low=c.ci and c.ci[0],
                high=c.ci and c.ci[1],
                paired=c.n_pairs,
                seeds=list(c.seeds),
                p=p,
                p_adjusted=adjusted,
                weight=weight,
                alpha=ALPHA,
                claim=adjusted < ALPHA,
            )
        )

    ranked = [e for e in report.entries if e.rank is not None]
    for e in ranked:
        ref, tuned = "equal_weighting.py", "tuned static weight"
        if e.vs_ref is not None:
            add(
                e.settings,
                e.vs_ref,
                "vs equal_weighting",
                e.label,
                ref,
                e.vs_ref.p_value,
                e.vs_ref.p_adjusted,
                e.vs_ref.weight,
            )
        if (t := e.vs_tuned) is not None:
            add(e.settings, t, "vs tuned static weight", e.label, tuned, t.p_value, t.p_adjusted, t.weight)
            add(
                e.settings,
                t,
                f"equivalence to tuned static weight (±{MARGIN})",
                e.label,
                tuned,
                t.p_equivalent,
                t.p_equivalent_adjusted,
                t.weight_equivalent,
            )
    for e in ranked:
        for other, c in e.pairs.items():
            add(e.settings, c, "pair", e.label, other, c.p_value, c.p_adjusted, c.weight)
    return out


def board_model(report: Report) -> BoardRecord:
    return BoardRecord(
        profile=report.profile,
        phase=report.phase,
        archs=report.archs,
        ranked_on=report.only_arch or "all",
        seeds=list(report.seeds),
        entries=[entry_model(report, e, e.kind) for section in report.sections() for e in section.rows],
        tests=test_records(report),
        power=[
            PowerRecord(
                group=group,
                seeds=p.seeds,
                sd=p.sd,
                tests=p.tests,
                level_primary=p.level_primary,
                level_pair=p.level_pair,
                detectable_vs_equal_weighting=p.vs_ref,
                detectable_pair=p.pair,
            )
            for group, p in report.power.items()
            if p is not None
        ],
        retired=[
            RetiredRecord(
                entry=one_line(r.submission),
                submission_sha256=r.sha256,
                kind=r.kind or None,
                since=r.at,
                reason=one_line(r.reason),
            )
            for r in report.retired
        ],
    )


def records(report: Report) -> list[dict[str, object]]:
    return [entry_record(report, e, e.kind) for section in report.sections() for e in section.rows]


def render_json(report: Report) -> str:
    return json.dumps(board_model(report).model_dump(), indent=2, ensure_ascii=False) + "\n"


PER_ARCH = tuple(k for k in ArchRecord.model_fields)
COMPARED = ("diff", "diff_low", "diff_high", "paired", "p", "p_adjusted", "significant")
HEAD = (
    "section",
    "group",
    "headline",
    "rank",
    "rank_best",
    "rank_worst",
    "entry",
    "name",
    "version",
    "kind",
    "submission_sha256",
    "current",
    "superseded",
    "identical_to",
)
TAIL = (
    "p_improvement",
    "score",
    "score_low",
    "score_high",
    "single_seed_score",
    "significantly_above",
    "cost",
    "cost_on",
    "source",
)


def _list(values: object) -> str:
    return seed_list(values) if isinstance(values, list) else ""


def render_csv(report: Report) -> str:
    """One line per entry, one number per column (the JSON's fields; the architectures' as
    ``ARCH_field``, the comparison with equal weighting as ``ew_field``, with the tuned static
    weight as ``tuned_field``); ranks as integers; text cells safe for a spreadsheet (:func:`csv_cell`)."""
    flat = []
    for rec in records(report):
        row = {k: rec[k] for k in HEAD + TAIL}
        for k in ("entry", "name", "source", "cost_on"):
            row[k] = csv_cell(str(rec[k] or ""))
        row["identical_to"] = csv_cell("; ".join(rec["identical_to"]))  # type: ignore[arg-type]
        row["significantly_above"] = csv_cell("; ".join(rec["significantly_above"]))  # type: ignore[arg-type]
        for arch, values in rec["archs"].items():  # type: ignore[attr-defined]
            for k, v in values.items():
                row[f"{arch}_{k}"] = _list(v) if k.endswith("_seeds") else v
        for prefix, key in (("ew", "vs_equal_weighting"), ("tuned", "vs_tuned")):
            for k, v in (rec[key] or {}).items():  # type: ignore[attr-defined]
                row[f"{prefix}_{k}"] = _list(v) if k == "seeds" else v
        flat.append(row)
    tuned = ("label", "p_equivalent", "p_equivalent_adjusted")
    cols = (
        list(HEAD)
        + [f"{a}_{k}" for a in report.archs for k in PER_ARCH]
        + [f"ew_{k}" for k in COMPARED]
        + [f"tuned_{k}" for k in (*tuned, *COMPARED)]
        + list(TAIL)
    )
    df = pd.DataFrame(flat, columns=cols)
    ints = ["rank", "rank_best", "rank_worst", "ew_paired", "tuned_paired"]
    for col in ints + [c for c in cols if c.endswith(("_n", "_failed", "_paired"))]:
        df[col] = df[col].astype("Int64")
    return df.to_csv(index=False, lineterminator="\n", float_format=None)


def render_tests_csv(report: Report) -> str:
    """Every test of the families, one line each, unrounded (``repr`` precision)."""
    cols = list(TestRecord.model_fields)
    tests = test_records(report)
    rows = [{**t.model_dump(), "a": csv_cell(t.a), "b": csv_cell(t.b), "seeds": _list(t.seeds)} for t in tests]
    return pd.DataFrame(rows, columns=cols).to_csv(index=False, lineterminator="\n")
