"""The HTML report's figures (matplotlib, Agg, embedded as PNG): per architecture, fine against
coarse accuracy of every entry with the static-weight sweep as a curve; per submission, its
learning curves against the baselines', the loss weights it produced (epoch means), and per
logged step its weights and the scalars its ``scalars()`` reported (``steps.jsonl``).

Every panel that has lines has a legend (one per figure, beside the panels, with one colour per
entry in every panel); a panel without data says so instead of drawing an empty frame; epochs and
steps have whole-number ticks; the trade-off plot's names are moved apart until none overlaps.

Whatever finite numbers an entry produced are drawn: weights and scalars beyond ±:data:`LINEAR`
put their axis on a symmetric-log scale, and values beyond ±:data:`CLIP` are drawn at it (the
caption says so); anything that is not a finite number is left out; a figure draws at most
:data:`MAX_SCALAR_NAMES` distinct scalar names and says how many it left out. A figure that still
fails becomes a one-line note (:data:`FAILED`) and the rest of the report is drawn."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import pandas as pd

from harness.report.model import Report
from harness.results import aggregate
from harness.results.aggregate import ArchStats, Standing
from harness.results.rundir import RunDir
from harness.results.static_sweep import SWEEP, sweep_members

Figure = tuple[str, str]  # (caption, base64 PNG); an empty PNG: the caption is a note that it failed
MAX_SCALAR_NAMES = 16  # distinct scalars() names drawn per submission's figure
LINEAR = 1e4  # beyond this magnitude an axis of weights or scalars is symmetric-log
CLIP = 1e15  # values beyond this magnitude are drawn at it
FAILED = "could not be drawn"


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None (a string, a bool, NaN, infinity: not drawn)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _bounded(ax, values: list[float]) -> bool:
    """Set ``ax`` to a symmetric-log scale when ``values`` reach beyond ±LINEAR, with at most about
    seven decades ticked (labelled as plain text: math text is off); True when it did (the values
    drawn are :func:`_clip`'s)."""
    if not values or max(abs(v) for v in values) <= LINEAR:
        return False
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("symlog", linthresh=1.0)
    top = math.ceil(math.log10(min(CLIP, max(abs(v) for v in values))))
    step = max(1, math.ceil(top / 6))
    decades = [10.0**k for k in range(0, top + 1, step)]
    low = min(values)
    ticks = sorted({0.0, *decades, *(-d for d in decades if low < 0 and d <= max(1.0, -low) * 10)})
    ax.set_yticks(ticks)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}" if abs(v) >= LINEAR else f"{v:g}"))
    ax.yaxis.set_minor_locator(plt_null_locator())
    return True


def plt_null_locator():
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _clip(values: list[float]) -> list[float]:
    return [max(-CLIP, min(CLIP, v)) for v in values]


def safely(what: str, draw, *args) -> list[Figure]:
    """``draw(*args)``'s figures, or one note saying that ``what`` could not be drawn and why (one line)."""
    import matplotlib.pyplot as plt

    try:
        return draw(*args)
    except Exception as e:  # noqa: BLE001 - any failure of one figure must not stop the report
        plt.close("all")
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        return [(f"{what}: {FAILED} ({reason})", "")]


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
    found = [(i + 1, [_number(m[column].iloc[i]) for m in frames]) for i in range(epochs)]
    kept = [(epoch, _clip([x for x in v if x is not None])) for epoch, v in found if None not in v]
    if not kept:
        return None
    means = [sum(v) / len(v) for _, v in kept]
    stds = [aggregate.statistics_std(v) or 0.0 for _, v in kept]
    return [epoch for epoch, _ in kept], means, stds


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

    def draw() -> list[Figure]:
        drawn = tradeoff_figure(report, plt)
        if drawn is None:
            return []
        fig, caption = drawn
        png = _png(fig)
        plt.close(fig)
        return [(caption, png)]

    return safely("the fine-against-coarse plot", draw)


def tradeoff_figure(report: Report, plt):
    """``(the matplotlib figure of :func:`tradeoffs`, its caption)``, or None with nothing to draw.
    Its legend lists the kinds of point some panel shows, and only those."""
    entries = [e for e in report.entries if any(s.coarse for s in e.archs.values())]
    if not entries:
        return None
    fig, axes = _panels(plt, len(report.archs), height=5.5)
    sweep = sweep_members(report.entries)
    drawn: set[str] = set()  # what the legend lists: only what some panel shows
    labels: dict[int, list] = {}  # per panel, the names drawn beside the points
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
        names = labels.setdefault(id(ax), [])
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
            leader = dict(arrowstyle="-", lw=0.5, color="#999", shrinkA=0, shrinkB=3)
            if e.submission in SWEEP:  # by its weight; the two with a name of their own keep it
                w = SWEEP[e.submission]
                names.append(
                    ax.annotate(
                        f"w={w:g}" + (f" {_short(e.label)}" if w in (0, 1) else ""),
                        (s.coarse_mean, s.mean),
                        xytext=(-4 if left else 4, -10),
                        textcoords="offset points",
                        ha="right" if left else "left",
                        va="center",
                        fontsize=7,
                        color="#1f77b4",
                        arrowprops=leader,
                    )
                )
                continue
            names.append(
                ax.annotate(
                    _short(e.label),
                    (s.coarse_mean, s.mean),
                    xytext=(-6 if left else 6, 4),
                    textcoords="offset points",
                    ha="right" if left else "left",
                    va="center",
                    fontsize=8 if e.kind == "submission" else 7,
                    fontweight="bold" if e.kind == "submission" else "normal",
                    arrowprops=leader,
                )
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
    for texts in labels.values():
        spread_labels(fig, texts)
    joined = "; the static-weight sweep joined in order of its coarse weight w" if sweep_line else ""
    return fig, (
        "Fine against coarse accuracy per architecture: each entry's mean over seeds (bars: ± 1 sample std)"
        f"{joined}. Up is better on the leaderboard's metric, right on the auxiliary task."
    )


def _free(
    placed: list[tuple[float, float, float, float]], box: tuple[float, float, float, float], step: int, pad: float
) -> float:
    """The smallest vertical shift of ``box`` (x0, x1, y0, y1) in direction ``step`` (-1 down, +1 up)
    after which it overlaps none of ``placed``."""
    x0, x1, y0, y1 = box
    dy = 0.0
    while True:
        hits = [p for p in placed if x0 < p[1] and p[0] < x1 and y0 + dy < p[3] and p[2] < y1 + dy]
        if not hits:
            return dy
        dy = (min(p[2] for p in hits) - pad - y1) if step < 0 else (max(p[3] for p in hits) + pad - y0)


def spread_labels(fig, texts: list, pad: float = 1.5) -> None:
    """Move the annotations ``texts`` (offsets in points) up or down until no two names overlap on
    the canvas: from the top down, each name keeps its place unless it overlaps one already placed,
    then moves to the nearest free height (above or below, ``pad`` pixels apart); a thin line keeps
    each name tied to its point. Measured once per name (the text alone, not its line)."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in texts]
    placed: list[tuple[float, float, float, float]] = []
    for i in sorted(range(len(texts)), key=lambda k: -(boxes[k].y0 + boxes[k].y1)):
        box = (boxes[i].x0, boxes[i].x1, boxes[i].y0, boxes[i].y1)
        dy = min(_free(placed, box, -1, pad), _free(placed, box, 1, pad), key=abs)
        placed.append((box[0], box[1], box[2] + dy, box[3] + dy))
        if dy:
            x, y = texts[i].xyann
            texts[i].xyann = (x, y + dy * 72.0 / fig.dpi)  # pixels to points


def learning_curves(report: Report, runs_dir: Path) -> list[Figure]:
    """Per submission: test fine accuracy per epoch on each architecture against the baselines, the
    loss weights it produced, and its logged steps; each figure drawn on its own (:func:`safely`)."""
    plt = _pyplot()
    baselines = [b for b in report.entries if b.kind == "baseline"]
    # one colour and dash per baseline: tab10's ten, then tab20's ten lighter ones, then again dashed, dotted
    palette = [plt.cm.tab10(i) for i in range(10)] + [plt.cm.tab20(2 * i + 1) for i in range(10)]
    styles = {b.label: dict(color=palette[i % 20], ls=("-", "--", ":")[i // 20 % 3]) for i, b in enumerate(baselines)}
    figures = []
    for sub in report.section("submission"):
        figures += safely(f"{sub.label}: the learning curves", _accuracy, plt, report, sub, baselines, styles, runs_dir)
        figures += safely(f"{sub.label}: the loss weights per epoch", _weights, plt, report, sub, runs_dir)
        figures += safely(f"{sub.label}: the logged steps", _steps, plt, report, sub, runs_dir)
    return figures


def _accuracy(plt, report: Report, sub: Standing, baselines: list[Standing], styles: dict, runs_dir: Path):
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
            _whole_ticks(ax, plt)
            ax.set(xlabel="epoch", ylabel="test fine accuracy (%)")
            ax.grid(alpha=0.3)
        else:
            _empty(ax, f"no per-epoch metrics of {_short(sub.label)} on {arch} under {runs_dir}")
    out = []
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
        out.append(
            (
                f"{sub.label}: test fine accuracy per epoch (mean over seeds, band ± 1 std) against the "
                "baselines; one colour per entry in every panel",
                _png(fig),
            )
        )
    plt.close(fig)
    return out


def _whole_ticks(ax, plt) -> None:
    """Whole-number ticks on the x axis (epochs, steps)."""
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True, min_n_ticks=1))


def _bounded_note(bounded: bool) -> str:
    return (
        f" (values beyond ±{LINEAR:g} on a symmetric-log scale, beyond ±{CLIP:g} drawn at ±{CLIP:g})" if bounded else ""
    )


def _weights(plt, report: Report, sub: Standing, runs_dir: Path) -> list[Figure]:
    fig, ax = plt.subplots(figsize=(9.0, 4.2))
    curves = []
    for arch in report.archs:
        for column, dash in (("weight_fine", "-"), ("weight_coarse", "--")):
            curve = _curve(runs_dir, sub.archs[arch], column)
            if curve is not None:
                curves.append((f"{arch} {column.removeprefix('weight_')}", dash, curve))
    out = []
    if curves:
        bounded = _bounded(ax, [v for _, _, (_, mean, _) in curves for v in mean])
        for label, dash, (x, mean, _) in curves:
            ax.plot(x, mean, dash, marker="o" if len(x) <= 30 else None, ms=3, label=label)
        _whole_ticks(ax, plt)
        ax.set(title=f"{_short(sub.label)}: loss weights", xlabel="epoch", ylabel="mean dL/dL_task over the epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        out.append(
            (
                f"{sub.label}: the weights it gave each task's loss (dL/d fine_loss, dL/d coarse_loss; epoch "
                f"means, averaged over seeds){_bounded_note(bounded)}",
                _png(fig),
            )
        )
    plt.close(fig)
    return out


def _points(lines: list[dict], key, name: str | None = None) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of one logged quantity: ``key`` of each line (or its scalar ``name``), the
    finite numbers only, clipped."""
    steps, values = [], []
    for x in lines:
        raw = x.get(key) if name is None else (x.get("scalars") or {}).get(name)
        step, value = _number(x.get("step")), _number(raw)
        if step is not None and value is not None:
            steps.append(int(step))
            values.append(value)
    return steps, _clip(values)


def _scalar_names(runs: dict[str, list[tuple[int, list[dict]]]]) -> tuple[list[str], int]:
    """The first :data:`MAX_SCALAR_NAMES` distinct scalar names in the order they appear (architecture
    by architecture, seed by seed), and how many more there are."""
    seen: dict[str, None] = {}
    for arch_runs in runs.values():
        for _, lines in arch_runs:
            for x in lines:
                scalars = x.get("scalars")
                if isinstance(scalars, dict):
                    seen.update(dict.fromkeys(str(k) for k in scalars))
    names = list(seen)
    return names[:MAX_SCALAR_NAMES], max(0, len(names) - MAX_SCALAR_NAMES)


def _steps(plt, report: Report, sub: Standing, runs_dir: Path) -> list[Figure]:
    """Per architecture (a column each): the loss weights of every logged step, and under them the
    scalars the module reported (at most :data:`MAX_SCALAR_NAMES` names), one line per seed (their
    runs' ``steps.jsonl``)."""
    runs = {
        arch: [
            (seed, RunDir.from_id(runs_dir, rid).read_steps()) for seed, rid in sorted(sub.archs[arch].run_ids.items())
        ]
        for arch in report.archs
    }
    runs = {arch: [(seed, lines) for seed, lines in seeds if lines] for arch, seeds in runs.items()}
    if not any(runs.values()):
        return []
    names, dropped = _scalar_names(runs)
    rows = 2 if names else 1
    width = max(6.5, min(14.0, 6.5 * len(report.archs)))
    fig, axes = plt.subplots(rows, len(report.archs), figsize=(width, 3.6 * rows), squeeze=False)
    colours = {
        n: plt.cm.tab20(i % 20) if i >= 10 else plt.cm.tab10(i) for i, n in enumerate(["fine", "coarse", *names])
    }
    seeds = sorted({seed for arch_runs in runs.values() for seed, _ in arch_runs})
    dashes = {seed: ("-", "--", ":", "-.")[i % 4] for i, seed in enumerate(seeds)}
    bounded = False
    for col, arch in enumerate(report.archs):
        top, bottom = axes[0][col], axes[-1][col]
        weights = [
            (seed, task, _points(lines, f"weight_{task}")) for seed, lines in runs[arch] for task in ("fine", "coarse")
        ]
        scalars = [(seed, n, _points(lines, "scalars", n)) for seed, lines in runs[arch] for n in names]
        bounded |= _bounded(top, [v for *_, (_, values) in weights for v in values])
        if names:
            bounded |= _bounded(bottom, [v for *_, (_, values) in scalars for v in values])
        for seed, task, (steps, values) in weights:
            if steps:
                top.plot(steps, values, dashes[seed], color=colours[task], lw=1)
        for seed, name, (steps, values) in scalars:
            if steps:
                bottom.plot(steps, values, dashes[seed], color=colours[name], lw=1)
        top.set(title=f"{arch}: loss weights per step", xlabel="training step", ylabel="dL/dL_task")
        if names:
            bottom.set(title=f"{arch}: scalars()", xlabel="training step", ylabel="reported value")
        for ax in {top, bottom}:
            ax.grid(alpha=0.3)
            _whole_ticks(ax, plt)
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
    more = f"; {dropped} more scalar names not drawn (at most {MAX_SCALAR_NAMES} a figure)" if dropped else ""
    left_out = sum(
        x["scalars_dropped"]
        for arch_runs in runs.values()
        for _, lines in arch_runs
        for x in lines
        if isinstance(x.get("scalars_dropped"), int)
    )
    if left_out:
        more += f"; the runs kept their first 16 names and left out {left_out:,} values of others"
    return [
        (
            f"{sub.label}: the weights it gave each task's loss at every logged step{reported}; one line style "
            f"per seed{more}{_bounded_note(bounded)}",
            png,
        )
    ]
