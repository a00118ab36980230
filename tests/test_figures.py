"""The HTML report's figures: what the trade-off plot's legend lists, and the per-step loss
weights and the scalars a loss module reported, read from the run directories."""

from __future__ import annotations

import pytest

from harness import report
from harness.leaderboard import read_rows
from harness.report import figures

from helpers import SEEDS, leaderboard_row, write_leaderboard

ACC = {"resnet20": (60.0, 61.0, 62.0), "resnet56": (70.0, 71.5, 71.0)}


def _rows(name, kind, sha):
    return [
        leaderboard_row(seed=seed, acc=acc + (kind == "submission"), submission=name, kind=kind,
                        submission_sha256=sha * 64, profile="full", arch=arch, epochs=200,
                        run_id=f"full/{name}/public/{arch}-seed{seed}")
        for arch, values in ACC.items() for seed, acc in zip(SEEDS, values)
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
        ([("mine.py", "submission", "a"), ("equal_weighting.py", "baseline", "c"), ("fine_only.py", "baseline", "d")],
         ["submission", "static-weight sweep (by w)"]),
    ],
)
def test_the_tradeoff_legend_lists_only_what_is_drawn(tmp_path, entries, listed):
    *labels, caption = _legend(tmp_path, *entries)
    assert labels == listed
    assert ("static-weight sweep joined" in caption) == ("static-weight sweep (by w)" in listed)


def test_the_report_plots_each_submissions_weights_per_step_and_its_scalars(tmp_path):
    import json

    from harness.rundir import RunDir

    rows = _rows("mine.py", "submission", "a") + _rows("pcgrad.py", "baseline", "b")
    path = write_leaderboard(tmp_path / "leaderboard.csv", rows)
    for row in rows:
        run = RunDir.from_id(tmp_path / "runs", row.run_id)
        run.path.mkdir(parents=True)
        lines = [dict(step=s, epoch=s // 10, loss=1.0, fine_loss=1.0, coarse_loss=1.0, weight_fine=1.0,
                      weight_coarse=s / 40, **({"scalars": {"gate": s / 40}} if row.arch == "resnet20" else {}))
                 for s in range(9, 40, 10)]
        run.append_steps(lines)
    rep = report.build(read_rows(path), "public")
    captions = [caption for caption, _ in figures.learning_curves(rep, tmp_path / "runs")]
    assert "mine.py: the weights it gave each task's loss at every logged step and what its scalars() reported " \
           "(gate); one line style per seed" in captions
    assert not any(c.startswith("pcgrad.py") for c in captions)  # per submission, as the other figures
    assert json.loads(RunDir.from_id(tmp_path / "runs", rows[0].run_id).steps.read_text().splitlines()[0])["step"] == 9
    # nothing logged (runs from before steps.jsonl): no figure, no error
    assert not figures._steps(figures._pyplot(), rep, rep.entries[0], tmp_path / "elsewhere")
