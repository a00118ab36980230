"""``harness compare A B``: two entries of one leaderboard view compared directly, paired over the
seeds both have, as each entry is compared with equal weighting: per architecture and pooled over
(architecture, seed), the mean difference, its 95% t-interval and the paired t-test. It is one
comparison chosen by the user, so its p-values are not adjusted (state in advance which two you
compare: picking the pair after looking at the board is a multiple comparison of its own)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import aggregate
from harness.aggregate import LEVEL, TEST_NAME, ArchStats, Standing
from harness.errors import UsageError
from harness.report.model import Report


def find_entry(report: Report, name: str) -> Standing:
    """The measured entry ``name`` names: its label (``x.py``, ``x.py @1a2b3c4d``, ``x.py [bf16]``),
    its file name with or without ``.py`` (its newest version when it has several), or ``NAME@SHA``
    with a prefix of its sha256 for another version."""
    base, _, sha = name.partition("@")
    base = base.strip()
    candidates = [e for e in report.entries if e.label == name] or [
        e
        for e in report.entries
        if e.submission in (base, f"{base}.py") and (not sha or e.sha256.startswith(sha.strip().lower()))
    ]
    if not sha and len({(e.kind, e.submission, e.settings) for e in candidates}) == 1:
        newest = [e for e in candidates if not e.version.startswith("superseded")]
        if len(newest) == 1:  # one entry with several versions: the newest, unless @SHA says otherwise
            return newest[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        known = ", ".join(sorted({e.submission for e in report.entries})) or "none"
        raise UsageError(f"no entry {name!r} in profile {report.profile}, phase {report.phase}; entries: {known}")
    options = "; ".join(
        f"{e.display} (use {e.submission}@{e.sha256[:8]}"
        + (f", settings {e.settings}" if e.settings != aggregate.DEFAULT_SETTINGS else "")
        + ")"
        for e in candidates
    )
    raise UsageError(f"{name!r} names several entries: {options}")


def paired(a: Standing, b: Standing, archs: list[str]) -> dict[str, ArchStats]:
    """``a - b`` per architecture over their common seeds, and ``"pooled"`` over (architecture, seed)."""
    out = {arch: aggregate.compare(a.archs[arch].seeds, b.archs[arch].seeds) for arch in archs}
    out["pooled"] = aggregate.compare(*_pooled(a, b, archs))
    return out


def _pooled(a: Standing, b: Standing, archs: list[str]) -> tuple[dict, dict]:
    first, second = (aggregate.arch_seed_values({arch: e.archs[arch] for arch in archs}) for e in (a, b))
    return first, second


def render_compare(console: Console, report: Report, a: Standing, b: Standing) -> None:
    diffs = paired(a, b, report.archs)
    console.print(
        f"A = {escape(a.display)}, B = {escape(b.display)} (profile {escape(report.profile)}, phase {report.phase})"
    )
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for col in ("arch", "A", "B", "Δ A-B", f"{LEVEL:.0%} interval", "p", "pairs"):
        table.add_column(col, justify="left" if col == "arch" else "right", no_wrap=True)
    pooled_a, pooled_b = _pooled(a, b, report.archs)
    for arch, d in diffs.items():
        x, y = (pooled_a, pooled_b) if arch == "pooled" else (a.archs[arch].seeds, b.archs[arch].seeds)
        common = sorted(set(x) & set(y))
        acc = lambda values: f"{sum(values) / len(values):.2f}" if values else ""  # noqa: E731
        interval = f"[{d.ci[0]:+.2f}, {d.ci[1]:+.2f}]" if d.ci is not None else ""
        p = "" if d.p_value is None else ("<0.001" if d.p_value < 0.001 else f"{d.p_value:.3f}")
        table.add_row(
            arch,
            acc([x[k] for k in common]),
            acc([y[k] for k in common]),
            "" if d.diff is None else f"{d.diff:+.2f}",
            interval,
            p or escape(d.no_test),
            str(d.n_pairs),
        )
    console.print(table)
    console.print(
        f"[dim]A, B: mean best fine test accuracy (%) over the seeds both have (the pairs); Δ: the mean of "
        f"the per-seed A - B; {TEST_NAME}; "
        "pooled: over (architecture, seed) pairs. One comparison you chose: p is not adjusted. With 3 "
        "seeds only large, consistent differences reach p < 0.05, and a larger p does not mean the two "
        "are equal.[/]"
    )
