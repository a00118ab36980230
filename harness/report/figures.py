"""The HTML report's figures (matplotlib, Agg, embedded as PNG): per architecture, fine against
coarse accuracy of every entry with the static-weight sweep as a curve; per submission, its
learning curves against the baselines', the loss weights it produced (epoch means), and per
logged step its weights and the scalars its ``scalars()`` reported (``steps.jsonl``).

Every panel that has lines has a legend (one per figure, beside the panels, with one colour per
entry in every panel); a panel without data says so instead of drawing an empty frame; epochs are
counted from 1 with whole-number ticks."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pandas as pd

from harness import aggregate
from harness.aggregate import ArchStats, Standing
from harness.report.model import Report
from harness.rundir import RunDir
from harness.static_sweep import SWEEP, sweep_members

Figure = tuple[str, str]  # (caption, base64 PNG)


def _metrics(runs_dir: Path, run_id: str) -> pd.DataFrame | None:
    rows = RunDir.from_id(runs_dir, run_id).read_metrics()
    return pd.DataFrame(rows) if rows else None


def _curve(runs_dir: Path, stats: ArchStats, column: str) -> tuple[list[int], list[float], list[float]] | None:
    """Epochs (from 1), and the mean and sample std over seeds of ``column`` per epoch (the epochs
    every counted seed reached)."""
    frames = [m for rid in stats.run_ids.values() if (m := _metrics(runs_dir, rid)) is not None and column in m]
    if not frames:
        return None
    epochs = min(len(m) for m in frames)
    values = [[float(m[column].iloc[i]) for m in frames] for i in range(epochs)]
    means = [sum(v) / len(v) for v in values]
    stds = [aggregate.statistics_std(v) or 0.0 for v in values]
    return list(range(1, epochs + 1)), means, stds


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot():
    """pyplot on Agg, drawing every text as it is: a ``$`` in a name starts no formula (a bad one
    would stop the whole report)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="#777", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _panels(plt, n: int, height: float = 4.2):
    """``n`` panels side by side, about 1400 px wide in all (at 100 dpi) and at least 650 px each."""
    width = max(6.5, min(14.0, 6.5 * n))
    fig, axes = plt.subplots(1, n, figsize=(width, height), squeeze=False)
    return fig, list(axes[0])


def _short(label: str) -> str:
    return label.removesuffix(".py")


def tradeoffs(report: Report) -> list[Figure]:
    """Per architecture: every entry's mean best coarse accuracy against its mean best fine accuracy
    (error bars: sample std over seeds), the static-weight sweep joined in order of weight."""
    plt = _pyplot()
    drawn = tradeoff_figure(report, plt)
    if drawn is None:
        return []
    fig, caption = drawn
    png = _png(fig)
    plt.close(fig)
    return [(caption, png)]


def tradeoff_figure(report: Report, plt):
    """``(the matplotlib figure of :func:`tradeoffs`, its caption)``, or None with nothing to draw.
    Its legend lists the kinds of point some panel shows, and only those."""
    entries = [e for e in report.entries if any(s.coarse for s in e.archs.values())]
    if not entries:
        return None
    fig, axes = _panels(plt, len(report.archs), height=5.5)
    sweep = sweep_members(report.entries)
    drawn: set[str] = set()  # what the legend lists: only what some panel shows
    for ax, arch in zip(axes, report.archs):
        points = [(e, e.archs[arch]) for e in entries if e.archs[arch].coarse and e.archs[arch].mean is not None]
        if not points:
            _empty(ax, f"no run of {arch} has finished")
            ax.set_title(arch)
            continue
        for settings, members in sweep.items():
            curve = [(w, e.archs[arch]) for w, e in members if e.archs[arch].coarse and e.archs[arch].mean is not None]
            if len(curve) >= 2:
                drawn.add("sweep line")
                ax.plot(
                    [s.coarse_mean for _, s in curve],
                    [s.mean for _, s in curve],
                    "-",
                    color="#1f77b4",
                    lw=1.4,
                    alpha=0.7,
                    label=f"static weight sweep L_fine + w L_coarse ({settings})",
                )
        xs = [s.coarse_mean for _, s in points if s.coarse_mean is not None]  # (all: s.coarse is not empty)
        middle = (min(xs) + max(xs)) / 2
        for e, s in points:
            drawn.add("submission" if e.kind == "submission" else "sweep" if e.submission in SWEEP else "baseline")
            style = (
                dict(color="k", marker="D", ms=7, zorder=3)
                if e.kind == "submission"
                else (
                    dict(color="#1f77b4", marker="o", ms=5)
                    if e.submission in SWEEP
                    else dict(color="#d62728", marker="s", ms=5, alpha=0.8)
                )
            )
            ax.errorbar(s.coarse_mean, s.mean, xerr=s.coarse_std or 0, yerr=s.std or 0, lw=0.8, capsize=2, **style)
            # named on the side facing the middle, so it stays inside the panel
            left = s.coarse_mean is not None and s.coarse_mean > middle
            if e.submission in SWEEP:  # by its weight; the two with a name of their own keep it
                w = SWEEP[e.submission]
                ax.annotate(
                    f"w={w:g}" + (f" {_short(e.label)}" if w in (0, 1) else ""),
                    (s.coarse_mean, s.mean),
                    xytext=(-4 if left else 4, -10),
                    textcoords="offset points",
                    ha="right" if left else "left",
                    fontsize=7,
                    color="#1f77b4",
                    clip_on=True,
                )
                continue
            ax.annotate(
                _short(e.label),
                (s.coarse_mean, s.mean),
                xytext=(-6 if left else 6, 4),
                textcoords="offset points",
                ha="right" if left else "left",
                clip_on=True,
                fontsize=8 if e.kind == "submission" else 7,
                fontweight="bold" if e.kind == "submission" else "normal",
            )
        ax.margins(x=0.08, y=0.08)
        ax.set(title=arch, xlabel="best coarse test accuracy (%)", ylabel="best fine test accuracy (%)")
        ax.grid(alpha=0.3)
    sweep_line = "-" if "sweep line" in drawn else ""
    handles = [
        plt.Line2D([], [], color=color, marker=marker, ls=ls, label=label)
        for kind, color, marker, ls, label in (
            ("submission", "k", "D", "", "submission"),
            ("baseline", "#d62728", "s", "", "baseline"),
            ("sweep", "#1f77b4", "o", sweep_line, "static-weight sweep (by w)"),
        )
        if kind in drawn
    ]
    if handles:
        fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=9, bbox_to_anchor=(0.5, 1.06))
    fig.tight_layout()
    joined = "; the static-weight sweep joined in order of its coarse weight w" if sweep_line else ""
    return fig, (
        "Fine against coarse accuracy per architecture: each entry's mean over seeds (bars: ± 1 sample std)"
        f"{joined}. Up is better on the leaderboard's metric, right on the auxiliary task."
    )


def learning_curves(report: Report, runs_dir: Path) -> list[Figure]:
    """Per submission: test fine accuracy per epoch on each architecture against the baselines, and
    the loss weights it produced."""
    plt = _pyplot()
    baselines = [b for b in report.entries if b.kind == "baseline"]
    # one colour and dash per baseline: tab10's ten, then tab20's ten lighter ones, then again dashed, dotted
    palette = [plt.cm.tab10(i) for i in range(10)] + [plt.cm.tab20(2 * i + 1) for i in range(10)]
    styles = {b.label: dict(color=palette[i % 20], ls=("-", "--", ":")[i // 20 % 3]) for i, b in enumerate(baselines)}
    figures = []
    for sub in report.section("submission"):
        fig, axes = _panels(plt, len(report.archs))
        labelled: dict[str, object] = {}
        for ax, arch in zip(axes, report.archs):
            drawn = False
            for entry, style in [(b, dict(lw=1, alpha=0.7, **styles[b.label])) for b in baselines] + [
                (sub, dict(lw=2.4, color="k"))
            ]:
                curve = _curve(runs_dir, entry.archs[arch], "test_fine_acc")
                if curve is None:
                    continue
                x, mean, std = curve
                (line,) = ax.plot(x, mean, marker="o" if len(x) <= 30 else None, ms=3, **style)
                ax.fill_between(
                    x,
                    [m - s for m, s in zip(mean, std)],
                    [m + s for m, s in zip(mean, std)],
                    color=line.get_color(),
                    alpha=0.12,
                    lw=0,
                )
                labelled.setdefault(_short(entry.label), line)
                drawn = True
            ax.set_title(arch)
            if drawn:
                _epoch_axis(ax, plt)
                ax.set(xlabel="epoch", ylabel="test fine accuracy (%)")
                ax.grid(alpha=0.3)
            else:
                _empty(ax, f"no per-epoch metrics of {_short(sub.label)} on {arch} under {runs_dir}")
        if labelled:
            fig.legend(
                list(labelled.values()),
                list(labelled),
                loc="center left",
                bbox_to_anchor=(1.0, 0.5),
                fontsize=8,
                title="entry (every panel)",
                title_fontsize=8,
            )
            fig.tight_layout()
            figures.append(
                (
                    f"{sub.label}: test fine accuracy per epoch (mean over seeds, band ± 1 std) against the "
                    "baselines; one colour per entry in every panel",
                    _png(fig),
                )
            )
        plt.close(fig)
        figures += _weights(plt, report, sub, runs_dir)
        figures += _steps(plt, report, sub, runs_dir)
    return figures


def _epoch_axis(ax, plt) -> None:
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True, min_n_ticks=1))


def _weights(plt, report: Report, sub: Standing, runs_dir: Path) -> list[Figure]:
    fig, ax = plt.subplots(figsize=(9.0, 4.2))
    drawn = False
    for arch in report.archs:
        for column, dash in (("weight_fine", "-"), ("weight_coarse", "--")):
            curve = _curve(runs_dir, sub.archs[arch], column)
            if curve is not None:
                x, mean, _ = curve
                ax.plot(
                    x,
                    mean,
                    dash,
                    marker="o" if len(x) <= 30 else None,
                    ms=3,
                    label=f"{arch} {column.removeprefix('weight_')}",
                )
                drawn = True
    out = []
    if drawn:
        _epoch_axis(ax, plt)
        ax.set(title=f"{_short(sub.label)}: loss weights", xlabel="epoch", ylabel="mean dL/dL_task over the epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        out.append(
            (
                f"{sub.label}: the weights it gave each task's loss (dL/d fine_loss, dL/d coarse_loss; epoch "
                "means, averaged over seeds)",
                _png(fig),
            )
        )
    plt.close(fig)
    return out


def _steps(plt, report: Report, sub: Standing, runs_dir: Path) -> list[Figure]:
    """Per architecture (a column each): the loss weights of every logged step, and under them the
    scalars the module reported, one line per seed (their runs' ``steps.jsonl``)."""
    runs = {
        arch: [
            (seed, RunDir.from_id(runs_dir, rid).read_steps()) for seed, rid in sorted(sub.archs[arch].run_ids.items())
        ]
        for arch in report.archs
    }
    runs = {arch: [(seed, lines) for seed, lines in seeds if lines] for arch, seeds in runs.items()}
    if not any(runs.values()):
        return []
    names = sorted({n for seeds in runs.values() for _, lines in seeds for x in lines for n in x.get("scalars", {})})
    rows = 2 if names else 1
    width = max(6.5, min(14.0, 6.5 * len(report.archs)))
    fig, axes = plt.subplots(rows, len(report.archs), figsize=(width, 3.6 * rows), squeeze=False)
    colours = {n: plt.cm.tab10(i % 10) for i, n in enumerate(["fine", "coarse", *names])}
    seeds = sorted({seed for arch_runs in runs.values() for seed, _ in arch_runs})
    dashes = {seed: ("-", "--", ":", "-.")[i % 4] for i, seed in enumerate(seeds)}
    for col, arch in enumerate(report.archs):
        top, bottom = axes[0][col], axes[-1][col]
        for seed, lines in runs[arch]:
            steps = [x["step"] for x in lines]
            for task in ("fine", "coarse"):
                top.plot(steps, [x[f"weight_{task}"] for x in lines], dashes[seed], color=colours[task], lw=1)
            for name in names:
                points = [(x["step"], x["scalars"][name]) for x in lines if name in x.get("scalars", {})]
                if points:
                    bottom.plot(*zip(*points), dashes[seed], color=colours[name], lw=1)
        top.set(title=f"{arch}: loss weights per step", xlabel="training step", ylabel="dL/dL_task")
        if names:
            bottom.set(title=f"{arch}: scalars()", xlabel="training step", ylabel="reported value")
        for ax in {top, bottom}:
            ax.grid(alpha=0.3)
            if not ax.lines:
                _empty(ax, f"no logged steps of {_short(sub.label)} on {arch} under {runs_dir}")
    handles = [
        plt.Line2D([], [], color=colours[n], label=f"dL/dL_{n}" if n in ("fine", "coarse") else n) for n in colours
    ]
    handles += [plt.Line2D([], [], color="#555", ls=dashes[seed], label=f"seed {seed}") for seed in seeds]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    reported = f" and what its scalars() reported ({', '.join(names)})" if names else ""
    return [
        (
            f"{sub.label}: the weights it gave each task's loss at every logged step{reported}; one line style "
            "per seed",
            png,
        )
    ]
