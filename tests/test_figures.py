"""The HTML report's figures: what the trade-off plot's legend lists, and the per-step loss
weights and the scalars a loss module reported, read from the run directories; whole-number step
ticks, names on the trade-off plot that never overlap, and a report that draws whatever finite
numbers an entry produced (or says in one line which figure it could not draw)."""

from __future__ import annotations

import re

import pytest
from helpers import SEEDS, harness, leaderboard_row, write_leaderboard

from harness import report
from harness.report import figures
from harness.results import read_rows

ACC = {"resnet20": (60.0, 61.0, 62.0), "resnet56": (70.0, 71.5, 71.0)}


def _rows(name, kind, sha):
    return [
        leaderboard_row(
            seed=seed,
            acc=acc + (kind == "submission"),
            submission=name,
            kind=kind,
            submission_sha256=sha * 64,
            profile="full",
            arch=arch,
            epochs=200,
            run_id=f"full/{name}/public/{arch}-seed{seed}",
        )
        for arch, values in ACC.items()
        for seed, acc in zip(SEEDS, values)
    ]


def _legend(tmp_path, *entries) -> list[str]:
    rows = [row for name, kind, sha in entries for row in _rows(name, kind, sha)]
    path = write_leaderboard(tmp_path / "leaderboard.csv", rows)
    plt = figures._pyplot()
    fig, caption = figures.tradeoff_figure(report.build(read_rows(path), "public"), plt)
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    plt.close(fig)
    return labels + [caption]


@pytest.mark.parametrize(
    ("entries", "listed"),
    [
        ([("mine.py", "submission", "a")], ["submission"]),
        ([("mine.py", "submission", "a"), ("pcgrad.py", "baseline", "b")], ["submission", "baseline"]),
        ([("pcgrad.py", "baseline", "b")], ["baseline"]),
        (
            [
                ("mine.py", "submission", "a"),
                ("equal_weighting.py", "baseline", "c"),
                ("fine_only.py", "baseline", "d"),
            ],
            ["submission", "static-weight sweep (by w)"],
        ),
    ],
)
def test_the_tradeoff_legend_lists_only_what_is_drawn(tmp_path, entries, listed):
    *labels, caption = _legend(tmp_path, *entries)
    assert labels == listed
    assert ("static-weight sweep joined" in caption) == ("static-weight sweep (by w)" in listed)


def test_the_report_plots_each_submissions_weights_per_step_and_its_scalars(tmp_path):
    import json

    from harness.results.rundir import RunDir

    rows = _rows("mine.py", "submission", "a") + _rows("pcgrad.py", "baseline", "b")
    path = write_leaderboard(tmp_path / "leaderboard.csv", rows)
    for row in rows:
        run = RunDir.from_id(tmp_path / "runs", row.run_id)
        run.path.mkdir(parents=True)
        lines = [
            dict(
                step=s,
                epoch=s // 10,
                loss=1.0,
                fine_loss=1.0,
                coarse_loss=1.0,
                weight_fine=1.0,
                weight_coarse=s / 40,
                **({"scalars": {"gate": s / 40}} if row.arch == "resnet20" else {}),
            )
            for s in range(9, 40, 10)
        ]
        run.append_steps(lines)
    rep = report.build(read_rows(path), "public")
    captions = [caption for caption, _ in figures.learning_curves(rep, tmp_path / "runs")]
    assert (
        "mine.py: the weights it gave each task's loss at every logged step and what its scalars() reported "
        "(gate); one line style per seed" in captions
    )
    assert not any(c.startswith("pcgrad.py") for c in captions)  # per submission, as the other figures
    assert json.loads(RunDir.from_id(tmp_path / "runs", rows[0].run_id).steps.read_text().splitlines()[0])["step"] == 9
    # nothing logged (runs from before steps.jsonl): no figure, no error
    assert not figures._steps(figures._pyplot(), rep, rep.entries[0], tmp_path / "elsewhere")


def _steps_lines(steps, scalars=lambda s: {}, weight=lambda s: s / 40):
    return [
        dict(
            step=s,
            epoch=0,
            loss=1.0,
            fine_loss=1.0,
            coarse_loss=1.0,
            weight_fine=1.0,
            weight_coarse=weight(s),
            **({"scalars": scalars(s)} if scalars(s) else {}),
        )
        for s in steps
    ]


def test_step_plots_have_whole_number_ticks(tmp_path, monkeypatch):
    from harness.results.rundir import RunDir

    rows = _rows("mine.py", "submission", "a")
    path = write_leaderboard(tmp_path / "leaderboard.csv", rows)
    for row in rows:  # a tiny run: four logged steps, 0 to 3
        run = RunDir.from_id(tmp_path / "runs", row.run_id)
        run.path.mkdir(parents=True)
        run.append_steps(_steps_lines(range(4), scalars=lambda s: {"gate": s / 3}))
    drawn = []
    monkeypatch.setattr(figures, "_png", lambda fig: drawn.append(fig) or "png")
    rep = report.build(read_rows(path), "public")
    figures._steps(figures._pyplot(), rep, rep.entries[0], tmp_path / "runs")
    ticks = [t for ax in drawn[0].axes for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_the_tradeoff_names_do_not_overlap(tmp_path):
    """Twelve entries within a few hundredths of a point of each other, two far away: every name stays
    readable (before, the twelve were written over each other)."""
    rows = []
    for k in range(14):
        name, kind = (f"method_{k:02d}.py", "submission") if k % 2 else (f"baseline_{k:02d}.py", "baseline")
        fine, coarse = {0: (50.0, 60.0), 1: (70.0, 80.0)}.get(k, (60.0 + 0.003 * k, 70.0 + 0.002 * k))
        rows += [
            leaderboard_row(
                seed=seed,
                acc=fine + seed / 1e5,
                submission=name,
                kind=kind,
                submission_sha256=f"{k:x}" * 64,
                profile="full",
                arch=arch,
                epochs=200,
                best_coarse_acc=coarse,
                run_id=f"full/{name}/{arch}-{seed}",
            )
            for arch in ACC
            for seed in SEEDS
        ]
    rep = report.build(read_rows(write_leaderboard(tmp_path / "lb.csv", rows)), "public")
    plt = figures._pyplot()
    fig, _ = figures.tradeoff_figure(rep, plt)
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the names, without their lines
        assert len(boxes) == 14
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not (a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1), (a, b)
    plt.close(fig)


def _metrics_lines(epochs, acc, weight=1.0):
    from harness.protocol import EpochMetrics

    return "".join(
        EpochMetrics(
            epoch=i,
            lr=0.1,
            train_fine_loss=1.0,
            train_coarse_loss=1.0,
            train_combined_loss=2.0,
            weight_fine=weight,
            weight_coarse=1.0,
            test_fine_loss=1.0,
            test_coarse_loss=1.0,
            test_fine_acc=acc * (i + 1) / epochs,
            test_coarse_acc=50.0,
            seconds=1.0,
        ).model_dump_json()
        + "\n"
        for i in range(epochs)
    )


@pytest.mark.slow
def test_hostile_numbers_and_names_beside_a_normal_entry_in_one_html_report(tmp_path):
    """Through the command: a 1e308 scalar and weight, rotating scalar names (8 new ones at every logged
    step, as a module may report), and a steps file that is not the trainer's (a figure that fails),
    beside a normal entry: exit 0, in bounded time; the normal entry's figures are drawn; the
    hostile ones are drawn on a bounded scale, capped, or replaced by a one-line note."""
    import json
    import time

    from harness.results.rundir import RunDir

    entries = {"normal.py": "n", "gate.py": "g", "rotating.py": "r", "garbled.py": "x"}
    rows = [row for name, sha in entries.items() for row in _rows(name, "submission", sha)]
    rows += _rows("equal_weighting.py", "baseline", "e")
    path = write_leaderboard(tmp_path / "leaderboard.csv", rows)
    steps = range(9, 4000, 10)
    for row in rows:
        run = RunDir.from_id(tmp_path / "runs", row.run_id)
        run.path.mkdir(parents=True)
        huge = row.submission == "gate.py"
        run.metrics.write_text(_metrics_lines(4, row.best_fine_acc, weight=1e308 if huge else 1.0))
        if row.submission == "garbled.py":
            # valid JSON, not a step: skipped by the reader as a torn line is, so nothing to draw
            run.steps.write_text("[1, 2, 3]\n" * 5)
        elif row.submission == "rotating.py":
            run.append_steps(_steps_lines(steps, scalars=lambda s: {f"n{s}_{i}": float(i) for i in range(8)}))
        else:
            value = (lambda s: 1e308) if huge else (lambda s: s / 4000)
            run.append_steps(_steps_lines(steps, scalars=lambda s, v=value: {"gate": v(s)}, weight=value))
    started = time.monotonic()
    r = harness(
        "leaderboard",
        "--leaderboard",
        path,
        "--format",
        "html",
        "--runs-dir",
        tmp_path / "runs",
        "--output",
        tmp_path / "report.html",
        cwd=tmp_path,
        timeout=300,
    )
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert took < 240, took  # 3,200 names would take minutes to draw; 16 take seconds
    page = (tmp_path / "report.html").read_text()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    notes = re.findall(r'<p class="figure-note">(.*?)</p>', page)
    assert any(c.startswith("normal.py: test fine accuracy per epoch") for c in captions)
    per_step = "normal.py: the weights it gave each task&#x27;s loss at every logged step"
    assert any(c.startswith(per_step) for c in captions)
    gate = [c for c in captions if c.startswith("gate.py: the weights")]
    assert len(gate) == 2 and all("symmetric-log scale" in c for c in gate), gate  # per epoch and per step
    rotating = next(c for c in captions if c.startswith("rotating.py: the weights it gave each task&#x27;s loss at"))
    assert "3184 more scalar names not drawn (at most 16 a figure)" in rotating
    assert notes == [] and not any(c.startswith("garbled.py") and "logged step" in c for c in captions), notes
    assert page.count("data:image/png;base64,") == 1 + 4 * 3 - 1  # every figure but the garbled steps'
    json.loads(harness("leaderboard", "--leaderboard", path, "--format", "json", cwd=tmp_path).stdout)
