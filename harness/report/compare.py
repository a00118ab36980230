"""``harness compare A B``: two entries of one leaderboard view compared directly, paired over the
seeds both have (the protocol's and any extra ones), as the board compares each entry with equal
weighting: per architecture, and in per-seed score (each seed's geometric mean over the
architectures), the mean difference, its 95% t-interval and the paired t-test. It is one comparison
chosen by the user, so its p-values are not adjusted (state in advance which two you compare:
picking the pair after looking at the board is a multiple comparison of its own)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import UsageError
from harness.evaluate.names import SOURCE_BASELINES
from harness.report.model import Report
from harness.results import aggregate
from harness.results.aggregate import LEVEL, TEST_NAME, Comparison, Standing
from harness.results.stats import geometric_mean

SCORE = "score"


def find_entry(report: Report, name: str) -> Standing:
    """The measured entry ``name`` names: its label (``x.py``, ``x.py @1a2b3c4d``, ``x.py [bf16]``),
    its file name with or without ``.py`` (the version the board ranks when it has several), or
    ``NAME@SHA`` with a prefix of its sha256 for another version."""
    base, _, sha = name.partition("@")
    base = base.strip()
    candidates = [e for e in report.entries if e.label == name] or [
        e
        for e in report.entries
        if e.submission in (base, f"{base}.py") and (not sha or e.sha256.startswith(sha.strip().lower()))
    ]
    if not sha and len({(e.kind, e.submission, e.settings) for e in candidates}) == 1:
        current = [e for e in candidates if e.current]
        if len(current) == 1:  # one entry with several versions: the ranked one, unless @SHA says otherwise
            return current[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        known = ", ".join(sorted({e.submission for e in report.entries})) or "none"
        baseline = f"{base.removesuffix('.py')}.py"
        hint = (
            f"; it is a baseline: `harness baselines --only {baseline.removesuffix('.py')} --profile "
            f"{report.profile}` runs it"
            if _is_baseline(baseline)
            else ""
        )
        raise UsageError(f"no entry {name!r} in profile {report.profile}, phase {report.phase}; entries: {known}{hint}")
    options = "; ".join(
        f"{e.display} (use {e.submission}@{e.sha256[:8]}"
        + (f", settings {e.settings}" if e.settings != aggregate.DEFAULT_SETTINGS else "")
        + ")"
        for e in candidates
    )
    raise UsageError(f"{name!r} names several entries: {options}")


def _is_baseline(filename: str) -> bool:
    return (SOURCE_BASELINES / filename).is_file()


def per_seed_scores(e: Standing, archs: list[str]) -> dict[int, float]:
    """``seed -> geometric mean over archs`` for the seeds (protocol and extra) every architecture has."""
    values = [e.archs[a].seeds | e.archs[a].extra for a in archs]
    common = set.intersection(*(set(v) for v in values)) if values else set()
    return {
        s: 0.0 if min(v[s] for v in values) <= 0 else geometric_mean([v[s] for v in values]) for s in sorted(common)
    }


def paired(a: Standing, b: Standing, archs: list[str]) -> dict[str, tuple[dict[int, float], dict[int, float]]]:
    """The values each row pairs: per architecture its seeds, and ``score`` the per-seed scores."""
    out = {arch: (_all(a.archs[arch]), _all(b.archs[arch])) for arch in archs}
    out[SCORE] = (per_seed_scores(a, archs), per_seed_scores(b, archs))
    return out


def _all(s: aggregate.ArchStats) -> dict[int, float]:
    return s.seeds | s.extra


def render_compare(console: Console, report: Report, a: Standing, b: Standing) -> None:
    console.print(
        f"A = {escape(a.display)}, B = {escape(b.display)} (profile {escape(report.profile)}, phase {report.phase})"
    )
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for col in ("", "A", "B", "Δ A-B", f"{LEVEL:.0%} interval", "p", "pairs"):
        table.add_column(col, justify="left" if col == "" else "right", no_wrap=True)
    for row, (x, y) in paired(a, b, report.archs).items():
        d: Comparison = aggregate.compare(x, y)
        common = sorted(set(x) & set(y))
        acc = lambda values: f"{sum(values) / len(values):.2f}" if values else ""  # noqa: E731
        interval = f"[{d.ci[0]:+.2f}, {d.ci[1]:+.2f}]" if d.ci is not None else ""
        p = "" if d.p_value is None else ("<0.001" if d.p_value < 0.001 else f"{d.p_value:.3f}")
        table.add_row(
            row,
            acc([x[k] for k in common]),
            acc([y[k] for k in common]),
            "" if d.diff is None else f"{d.diff:+.2f}",
            interval,
            p or escape(d.no_test),
            str(d.n_pairs),
        )
    console.print(table)
    console.print(
        f"[dim]A, B: mean best fine test accuracy (%) over the seeds both have (the pairs); score: per-seed score "
        f"(each seed's geometric mean over the architectures); Δ: the mean of the per-seed A - B; {TEST_NAME}. "
        "One comparison you chose: p is not adjusted. With 3 seeds only large, consistent differences reach "
        "p < 0.05, and a larger p does not mean the two are equal.[/]",
        soft_wrap=False,
    )
